-- nnn.build_bias: the reference package's toy test (k = 2, alpha = 0.75).
CREATE TABLE img (id int PRIMARY KEY, emb real[]);
INSERT INTO img VALUES (0,'{0,1,0,0}'),(1,'{1,0,0,0}'),(2,'{0,-1,0,0}'),(3,'{-1,0,0,0}'),(4,'{0,0,1,0}');
CREATE TABLE q (qid int, emb real[]);
INSERT INTO q VALUES (0,'{0,0.6,0.8,0}'),(1,'{0.6,0,0.8,0}'),(2,'{0,-0.6,0.8,0}'),(3,'{-0.6,0,0.8,0}'),(4,'{0,0,1,0}');
CREATE TABLE cap (emb real[]);
INSERT INTO cap SELECT ARRAY[emb[1], emb[2] + d, emb[3], emb[4]] FROM q, unnest('{0.01,-0.01}'::real[]) d;
INSERT INTO cap SELECT ARRAY[emb[1] + d, emb[2], emb[3], emb[4]] FROM q, unnest('{0.01,-0.01}'::real[]) d;
SELECT rows, skipped, reference_rows, k FROM nnn.build_bias('img', 'emb', 'cap', 'emb', k => 2);
SELECT id, round(nnn_bias::numeric, 5) AS bias FROM img ORDER BY id;
-- top-1 per query: candidate i for query i, scores 0.14625 … 0.25 (plain retrieval: 4 for all)
SELECT q.qid, best.id, round(best.s::numeric, 5) AS score
FROM q CROSS JOIN LATERAL (
  SELECT id, nnn_score(img.emb, q.emb, nnn_bias) s FROM img ORDER BY s DESC LIMIT 1) best
ORDER BY q.qid;
SELECT q.qid, best.id, round(best.s::numeric, 5) AS score
FROM q CROSS JOIN LATERAL (
  SELECT id, nnn_score(img.emb, q.emb, nnn_bias, 0) s FROM img ORDER BY s DESC LIMIT 1) best
ORDER BY q.qid;
-- idempotent: a second build recomputes the same values
SELECT rows FROM nnn.build_bias('img', 'emb', 'cap', 'emb', k => 2);
SELECT count(*) AS changed FROM img WHERE abs(nnn_bias - 0.605) > 1e-5 AND id < 4;
-- NULL embeddings are skipped and get a NULL bias
INSERT INTO img VALUES (5, NULL);
SELECT rows, skipped FROM nnn.build_bias('img', 'emb', 'cap', 'emb', k => 2);
SELECT id, nnn_bias IS NULL AS no_bias FROM img WHERE id = 5;
DELETE FROM img WHERE id = 5;
-- quoted, mixed-case and spaced identifiers work; the bias column can be named
CREATE TABLE "My Images" ("Emb Col" float8[]);
INSERT INTO "My Images" SELECT emb::float8[] FROM img;
SELECT rows FROM nnn.build_bias('"My Images"', 'Emb Col', 'cap', 'emb', 'Bias "X"', 2);
SELECT count("Bias ""X""") FROM "My Images";

-- any type with a cast to real[] works, as pgvector's vector does
CREATE TYPE wrapped AS (v real[]);
CREATE FUNCTION wrapped_to_real(wrapped) RETURNS real[] LANGUAGE sql IMMUTABLE AS 'SELECT $1.v';
CREATE CAST (wrapped AS real[]) WITH FUNCTION wrapped_to_real(wrapped);
CREATE TABLE wimg (id int, emb wrapped);
INSERT INTO wimg SELECT id, ROW(emb)::wrapped FROM img;
SELECT rows FROM nnn.build_bias('wimg', 'emb', 'cap', 'emb', k => 2);
SELECT count(*) AS same_bias FROM wimg w JOIN img i USING (id) WHERE w.nnn_bias = i.nnn_bias;

-- errors: the table is left as it was
SELECT nnn.build_bias('missing_table', 'emb', 'cap', 'emb');
SELECT nnn.build_bias('img', 'nope', 'cap', 'emb');
SELECT nnn.build_bias('img', 'id', 'cap', 'emb');
SELECT nnn.build_bias('img', 'emb', 'cap', 'emb', 'id');
SELECT nnn.build_bias('img', 'emb', 'cap', 'emb', k => 0);
SELECT nnn.build_bias('img', 'emb', 'cap', 'emb', k => 21);
CREATE TABLE empty_ref (emb real[]);
SELECT nnn.build_bias('img', 'emb', 'empty_ref', 'emb', 'other_bias', 2);
SELECT count(*) FROM pg_attribute WHERE attrelid = 'img'::regclass AND attname = 'other_bias';
CREATE TABLE ref3 (emb real[]);
INSERT INTO ref3 VALUES ('{1,0,0}');
SELECT nnn.build_bias('img', 'emb', 'ref3', 'emb', k => 1);
CREATE TABLE bad_img (emb real[]);
INSERT INTO bad_img VALUES ('{0,1,0,0}'), ('{0,NaN,0,0}');
SELECT nnn.build_bias('bad_img', 'emb', 'cap', 'emb', k => 2);
SELECT count(*) FROM pg_attribute WHERE attrelid = 'bad_img'::regclass AND attname = 'nnn_bias';
UPDATE bad_img SET emb = '{0,1,0}' WHERE emb[2] = 'NaN';
SELECT nnn.build_bias('bad_img', 'emb', 'cap', 'emb', k => 2);
-- injection attempts through text arguments are names, never SQL
SELECT nnn.build_bias('img', 'emb; DROP TABLE img; --', 'cap', 'emb');
SELECT rows FROM nnn.build_bias('"My Images"', 'Emb Col', 'cap', 'emb', 'x"; DROP TABLE img; --', 2);
SELECT attname FROM pg_attribute WHERE attrelid = '"My Images"'::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum;
SELECT count(*) AS img_rows FROM img;
SELECT attname FROM pg_attribute WHERE attrelid = 'img'::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum;
