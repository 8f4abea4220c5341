// Chain reads and transactions through the wallet (EIP-1193 eth_call / eth_sendTransaction) with viem.
// The ABIs are the ones registry_client ships; a revert is decoded by name from them.
import { createPublicClient, createWalletClient, custom, defineChain, parseEventLogs, zeroAddress } from "viem";
import { abi as computeEngineAbi } from "../../registry_client/abi/ComputeEngine.json";
import { abi as instructionAbi } from "../../registry_client/abi/ComputeInstructionRegistry.json";
import { abi as dlpAbi } from "../../registry_client/abi/DLPRegistry.json";
import { abi as refinerAbi } from "../../registry_client/abi/DataRefinerRegistry.json";
import { abi as queryEngineAbi } from "../../registry_client/abi/QueryEngine.json";

export const NATIVE = zeroAddress;
const MAX_SCAN = 500; // ids walked per list: a page never loops over an unbounded registry

export function connectChain(eth, config, account) {
  const chain = defineChain({
    id: config.chain_id,
    name: `chain ${config.chain_id}`,
    nativeCurrency: { name: "native", symbol: "ETH", decimals: 18 },
    rpcUrls: { default: { http: [] } },
  });
  const transport = custom(eth);
  const pub = createPublicClient({ chain, transport });
  const wallet = createWalletClient({ chain, transport, account });
  const a = config.addresses;
  const contracts = {
    dlp: { address: a.dlp_registry, abi: dlpAbi },
    refiner: { address: a.data_refiner_registry, abi: refinerAbi },
    instruction: { address: a.compute_instruction_registry, abi: instructionAbi },
    query: { address: a.query_engine, abi: queryEngineAbi },
    compute: { address: a.compute_engine, abi: computeEngineAbi },
  };
  const read = (key, functionName, args = []) => pub.readContract({ ...contracts[key], functionName, args });

  // Simulate first (eth_call): a revert is decoded with the ABI and nothing is sent.
  async function write(key, functionName, args = [], value = 0n) {
    const { request } = await pub.simulateContract({ ...contracts[key], functionName, args, account, value });
    const hash = await wallet.writeContract(request);
    const receipt = await pub.waitForTransactionReceipt({ hash, pollingInterval: 200 });
    if (receipt.status !== "success") throw new Error(`transaction ${hash} failed on chain`);
    return receipt;
  }

  function eventArg(key, receipt, eventName, arg) {
    const [log] = parseEventLogs({ abi: contracts[key].abi, logs: receipt.logs, eventName });
    return log?.args?.[arg];
  }

  async function upTo(key, countFn) {
    const n = Number(await read(key, countFn));
    return Array.from({ length: Math.min(n, MAX_SCAN) }, (_, i) => BigInt(i + 1));
  }

  return {
    account,
    read,
    write,
    eventArg,
    async myDlps() {
      const ids = await upTo("dlp", "dlpsCount");
      const dlps = await Promise.all(ids.map((id) => read("dlp", "dlps", [id])));
      return dlps.filter((d) => d.ownerAddress.toLowerCase() === account.toLowerCase());
    },
    async allDlps() {
      const ids = await upTo("dlp", "dlpsCount");
      return Promise.all(ids.map((id) => read("dlp", "dlps", [id])));
    },
    async refiners(dlpId) {
      const ids = (await read("refiner", "dlpRefiners", [dlpId])).slice(0, MAX_SCAN);
      return Promise.all(ids.map(async (id) => ({ id, ...(await read("refiner", "refiners", [id])) })));
    },
    async instructions() {
      const ids = await upTo("instruction", "instructionsCount");
      return Promise.all(ids.map(async (id) => ({ id, ...(await read("instruction", "instructions", [id])) })));
    },
    isApproved: (instructionId, dlpId) => read("instruction", "isApproved", [instructionId, dlpId]),
    async permissions(refinerId) {
      const ids = (await read("query", "refinerPermissionIds", [refinerId])).slice(0, MAX_SCAN);
      return Promise.all(ids.map(async (id) => ({ id, ...(await read("query", "permissions", [id])) })));
    },
    earnings: (dlpId) => read("query", "balanceOf", [dlpId, NATIVE]),
    balance: () => read("compute", "balanceOf", [account, NATIVE]),
    // What the refiners earned, from the QueryEngine's PaymentReceived events (amounts and job ids; never data).
    async payments(fromBlock) {
      const logs = await pub.getContractEvents({ ...contracts.query, eventName: "PaymentReceived",
        fromBlock: BigInt(fromBlock || 0), toBlock: "latest" });
      return logs.map((log) => log.args);
    },
  };
}
