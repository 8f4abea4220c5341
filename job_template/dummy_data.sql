-- Dummy refiner data for DEV_MODE runs (image-run.sh), no engine, no chain.
--
-- The first part mimics what a DLP's refiner database looks like (tables,
-- a view, seed rows). The last statement plays the engine's part: the engine
-- runs your permissioned query against the refiner's data and hands the job a
-- database holding ONE table, `results`. Edit that final SELECT to match the
-- query you will submit with `registry job submit --query ...`.

PRAGMA foreign_keys = ON;

CREATE TABLE locales (
  code TEXT PRIMARY KEY,
  name TEXT NOT NULL
);

CREATE TABLE users (
  id         INTEGER PRIMARY KEY,
  name       TEXT NOT NULL,
  email      TEXT NOT NULL UNIQUE,
  locale     TEXT NOT NULL REFERENCES locales(code),
  created_at TEXT NOT NULL          -- ISO 8601, UTC
);

CREATE TABLE activities (
  id         INTEGER PRIMARY KEY,
  user_id    INTEGER NOT NULL REFERENCES users(id),
  kind       TEXT NOT NULL,         -- run | ride | swim | walk
  duration_s INTEGER NOT NULL CHECK (duration_s > 0),
  created_at TEXT NOT NULL
);

CREATE INDEX activities_user ON activities(user_id);

INSERT INTO locales (code, name) VALUES
  ('en_US', 'English (United States)'),
  ('de_DE', 'German (Germany)'),
  ('fr_FR', 'French (France)'),
  ('es_ES', 'Spanish (Spain)'),
  ('ja_JP', 'Japanese (Japan)');

INSERT INTO users (id, name, email, locale, created_at) VALUES
  (1,  'Ada Lovelace',      'ada@example.org',      'en_US', '2024-01-03T09:12:00Z'),
  (2,  'Grace Hopper',      'grace@example.org',    'en_US', '2024-01-05T14:40:00Z'),
  (3,  'Alan Turing',       'alan@example.org',     'en_US', '2024-02-11T08:01:00Z'),
  (4,  'Emmy Noether',      'emmy@example.org',     'de_DE', '2024-02-14T17:25:00Z'),
  (5,  'Carl Gauss',        'carl@example.org',     'de_DE', '2024-03-02T10:00:00Z'),
  (6,  'Marie Curie',       'marie@example.org',    'fr_FR', '2024-03-09T12:30:00Z'),
  (7,  'Sophie Germain',    'sophie@example.org',   'fr_FR', '2024-03-21T07:45:00Z'),
  (8,  'Evariste Galois',   'evariste@example.org', 'fr_FR', '2024-04-01T19:05:00Z'),
  (9,  'Ramon y Cajal',     'ramon@example.org',    'es_ES', '2024-04-18T11:11:00Z'),
  (10, 'Margarita Salas',   'margarita@example.org','es_ES', '2024-05-06T15:50:00Z'),
  (11, 'Hideki Yukawa',     'hideki@example.org',   'ja_JP', '2024-05-20T06:30:00Z'),
  (12, 'Toshiko Yuasa',     'toshiko@example.org',  'ja_JP', '2024-06-02T13:15:00Z');

-- 240 activities, generated deterministically so every run sees the same data.
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 240)
INSERT INTO activities (id, user_id, kind, duration_s, created_at)
SELECT
  i,
  1 + ((i * i + 3 * i) % 19) % 12,
  CASE i % 4 WHEN 0 THEN 'run' WHEN 1 THEN 'ride' WHEN 2 THEN 'swim' ELSE 'walk' END,
  300 + (i * 137) % 5400,
  strftime('%Y-%m-%dT%H:%M:%SZ', '2024-06-01', '+' || (i * 9) || ' hours')
FROM n;

-- A view a refiner might expose: one row per user with their activity totals.
CREATE VIEW user_activity AS
SELECT
  u.id                         AS user_id,
  u.locale                     AS locale,
  COUNT(a.id)                  AS activity_count,
  COALESCE(SUM(a.duration_s), 0) AS total_duration_s,
  MAX(a.created_at)            AS last_active_at
FROM users u
LEFT JOIN activities a ON a.user_id = u.id
GROUP BY u.id;

-- What the engine does for a real job: your query's rows become `results`.
-- Note the query reads no names or emails: ask only for the columns you need
-- (the DLP owner grants permissions per table and column).
CREATE TABLE results AS
SELECT
  u.id                           AS user_id,
  u.locale                       AS locale,
  COUNT(a.id)                    AS activity_count,
  COALESCE(SUM(a.duration_s), 0) AS total_duration_s
FROM users u
LEFT JOIN activities a ON a.user_id = u.id
GROUP BY u.id, u.locale
ORDER BY u.id;
