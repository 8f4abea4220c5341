// Bundle the console for the engine to serve at /console (make setup runs this).
// One ES module bundle with viem inside; the ABIs come from registry_client/abi.
import { build } from "esbuild";
import { copyFileSync, mkdirSync, readFileSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, "..", "engine", "api", "console_static");
rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
// The shipped artifacts carry bytecode too; the page needs only the ABI.
const abiOnly = {
  name: "abi-only",
  setup(b) {
    b.onLoad({ filter: /registry_client[\\/]abi[\\/].*\.json$/ }, (args) => ({
      contents: JSON.stringify({ abi: JSON.parse(readFileSync(args.path, "utf8")).abi }),
      loader: "json",
    }));
  },
};

await build({
  plugins: [abiOnly],
  entryPoints: [join(here, "src", "main.js")],
  bundle: true,
  format: "esm",
  target: "es2022",
  minify: true,
  legalComments: "none",
  outfile: join(out, "app.js"),
  logLevel: "warning",
});
for (const name of ["index.html", "style.css"]) copyFileSync(join(here, name), join(out, name));
