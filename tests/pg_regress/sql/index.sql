-- nnn.create_index registers a searchable set, fills its bias and keeps it fresh.
SELECT rows, skipped, reference_rows, k FROM nnn.create_index('toy', 'img', 'id', 'emb', 'cap', 'emb', k => 2);
SELECT name, candidates, id_column, embedding_column, reference, reference_embedding, bias_column, k FROM nnn.indexes;
-- nnn_search: top-k with corrected scores (alpha from nnn.alpha)
SELECT id, round(score::numeric, 5) AS score FROM nnn_search('{0,0.6,0.8,0}', 3);
SELECT id, round(score::numeric, 5) AS score FROM nnn_search('toy', '{0,0,1,0}', 2);
SET nnn.alpha = 0;
SELECT id, round(score::numeric, 5) AS score FROM nnn_search('toy', '{0,0.6,0.8,0}', 2);
RESET nnn.alpha;
-- k larger than the table returns every row
SELECT count(*) FROM nnn_search('toy', '{0,0.6,0.8,0}', 100);
-- batch: one row per (query, rank)
SELECT query_no, rank, id, round(score::numeric, 5) AS score
FROM nnn_search_batch('toy', ARRAY[[0,0.6,0.8,0],[0,0,1,0]]::real[], 2);
-- inserted and updated rows get their bias from the trigger, in the same statement
INSERT INTO img VALUES (10, '{0,0.6,0.8,0}'), (11, '{0,0,0,1}');
SELECT id, round(nnn_bias::numeric, 5) AS bias FROM img WHERE id >= 10 ORDER BY id;
UPDATE img SET emb = '{0,0,1,0}' WHERE id = 11;
SELECT id, round(nnn_bias::numeric, 5) AS bias FROM img WHERE id = 11;
UPDATE img SET emb = NULL WHERE id = 11;
SELECT id, nnn_bias IS NULL AS no_bias FROM img WHERE id = 11;
-- search sees the transaction's own changes, deletes included
BEGIN;
DELETE FROM img WHERE id = 10;
SELECT id FROM nnn_search('toy', '{0,0.6,0.8,0}', 1);
ROLLBACK;
SELECT id FROM nnn_search('toy', '{0,0.6,0.8,0}', 1);
DELETE FROM img WHERE id IN (10, 11);
-- refresh recomputes after the reference set changed
DELETE FROM cap WHERE emb[3] > 0.99;
SELECT rows, reference_rows FROM nnn.refresh('toy');
-- errors
SELECT * FROM nnn_search('nope', '{0,0,1,0}', 1);
SELECT * FROM nnn_search('toy', '{0,0,1}', 1);
SELECT * FROM nnn_search('toy', '{0,0,1,0}', 0);
SELECT * FROM nnn_search('toy', '{0,NaN,1,0}', 1);
SELECT * FROM nnn_search_batch('toy', '{0,0,1,0}'::real[], 1);
SELECT nnn.create_index('toy', 'img', 'id', 'emb', 'cap', 'emb', k => 2);
SELECT nnn.create_index('toy2', 'img', 'emb', 'emb', 'cap', 'emb', k => 2);
SELECT rows FROM nnn.create_index('toy2', '"My Images"', 'Emb Col', 'Emb Col', 'cap', 'emb', k => 2);
-- the id column must be unique by itself: a primary key, or a unique index on it alone that
-- is neither partial nor deferrable (triggers and searches find rows by their id)
CREATE TABLE nu (id int, grp int, emb real[]);
INSERT INTO nu VALUES (1, 1, '{1,0,0,0}'), (1, 2, '{0,1,0,0}');
SELECT nnn.create_index('nu', 'nu', 'id', 'emb', 'cap', 'emb', k => 2);
CREATE UNIQUE INDEX ON nu (id, grp);
CREATE UNIQUE INDEX ON nu (id) WHERE grp = 1;
SELECT nnn.create_index('nu', 'nu', 'id', 'emb', 'cap', 'emb', k => 2);
DELETE FROM nu WHERE grp = 2;
ALTER TABLE nu ADD CONSTRAINT nu_id UNIQUE (id) DEFERRABLE;
SELECT nnn.create_index('nu', 'nu', 'id', 'emb', 'cap', 'emb', k => 2);
SELECT count(*) FROM nnn.indexes WHERE name = 'nu';
ALTER TABLE nu DROP CONSTRAINT nu_id, ADD CONSTRAINT nu_id UNIQUE (id) INCLUDE (grp);
SELECT rows FROM nnn.create_index('nu', 'nu', 'id', 'emb', 'cap', 'emb', k => 2);
SELECT nnn.drop_index('nu');
DROP TABLE nu;
-- candidates must be a table nnn can write biases into, and a bias column belongs to one index
CREATE VIEW imgv AS SELECT * FROM img;
SELECT nnn.create_index('v', 'imgv', 'id', 'emb', 'cap', 'emb', k => 2);
CREATE MATERIALIZED VIEW imgm AS SELECT * FROM img;
SELECT nnn.build_bias('imgm', 'emb', 'cap', 'emb', k => 2);
DROP VIEW imgv;
DROP MATERIALIZED VIEW imgm;
SELECT nnn.create_index('toy_k3', 'img', 'id', 'emb', 'cap', 'emb', k => 3);
SELECT nnn.build_bias('img', 'emb', 'cap', 'emb', k => 3);
SELECT nnn.build_bias('img', 'emb', 'cap', 'emb', bias_column => '', k => 3);
SELECT count(*) FROM nnn.indexes WHERE name = 'toy_k3';
SELECT rows FROM nnn.create_index('toy_k3', 'img', 'id', 'emb', 'cap', 'emb', k => 3, bias_column => 'bias_k3');
SELECT nnn.drop_index('toy_k3', true);
-- a partitioned table: its primary key counts; rows inserted into it get biases and are found
CREATE TABLE np (id bigint PRIMARY KEY, emb real[]) PARTITION BY RANGE (id);
CREATE TABLE np_a PARTITION OF np FOR VALUES FROM (0) TO (10);
CREATE TABLE np_b PARTITION OF np FOR VALUES FROM (10) TO (20);
INSERT INTO np VALUES (1, '{1,0,0,0}'), (15, '{0,1,0,0}');
SELECT rows FROM nnn.create_index('np', 'np', 'id', 'emb', 'cap', 'emb', k => 2);
INSERT INTO np VALUES (16, '{0,0,1,0}');
UPDATE np SET id = 5, emb = '{0,0,0.9,0.1}' WHERE id = 15;
SELECT id, round(nnn_bias::numeric, 5) AS bias FROM np ORDER BY id;
SELECT id FROM nnn_search('np', '{0,0,1,0}', 2);
SELECT nnn.drop_index('np', true);
DROP TABLE np;
-- two indexes: the one-argument form must be told which
CREATE TABLE img2 (id bigint PRIMARY KEY, emb real[]);
INSERT INTO img2 SELECT id + 100, emb FROM img;
SELECT rows FROM nnn.create_index('toy2', 'img2', 'id', 'emb', 'cap', 'emb', k => 2);
SELECT * FROM nnn_search('{0,0,1,0}', 1);
SELECT id FROM nnn_search('toy2', '{0,0,1,0}', 1);
-- drop_index removes the registration and the triggers, keeps the bias unless asked
SELECT nnn.drop_index('toy2', drop_bias_column => true);
SELECT count(*) FROM pg_trigger WHERE tgrelid = 'img2'::regclass;
SELECT count(*) FROM pg_attribute WHERE attrelid = 'img2'::regclass AND attname = 'nnn_bias';
SELECT nnn.drop_index('toy');
SELECT nnn.drop_index('toy');
SELECT count(*) FROM img WHERE nnn_bias IS NOT NULL;
-- dropping a candidate table forgets its index
SELECT rows FROM nnn.create_index('toy3', 'img2', 'id', 'emb', 'cap', 'emb', k => 2);
DROP TABLE img2;
SELECT count(*) FROM nnn.indexes;
-- the per-session search cache: filled by a search, brought up to date by the change log
CREATE TABLE ci (id int PRIMARY KEY, emb real[]);
INSERT INTO ci SELECT g, ARRAY[g, 1, 0, 0]::real[] FROM generate_series(1, 5) g;
SELECT rows FROM nnn.create_index('ci', 'ci', 'id', 'emb', 'cap', 'emb', k => 2);
SELECT index_name, rows FROM nnn.cache_info() WHERE index_name = 'ci';
SELECT id FROM nnn_search('ci', '{1,0,0,0}', 2);
SELECT index_name, rows FROM nnn.cache_info() WHERE index_name = 'ci';
DELETE FROM ci WHERE id = 5;
INSERT INTO ci VALUES (9, '{9,1,0,0}');
SELECT id FROM nnn_search('ci', '{1,0,0,0}', 2);
SELECT count(*) > 0 AS logged FROM nnn.changes WHERE index_name = 'ci';
-- each statement logs each id once, though its bias update fires the trigger again
SELECT id, count(*) FROM nnn.changes WHERE index_name = 'ci' GROUP BY id ORDER BY id;
-- refresh_rows by hand: ids that are not rows, and NULLs, are ignored
SELECT nnn.refresh_rows('ci', '{NULL, 1, 2, 999}');
-- upserts (INSERT ... ON CONFLICT DO UPDATE, as ORMs write) and MERGE: new and changed rows
-- get the biases a full build gives, and searches see them
CREATE TABLE up (id int PRIMARY KEY, emb real[]);
INSERT INTO up SELECT g, ARRAY[g % 3, g % 5, 1, 0]::real[] FROM generate_series(1, 10) g;
SELECT rows FROM nnn.create_index('up', 'up', 'id', 'emb', 'cap', 'emb', k => 2);
SELECT id FROM nnn_search('up', '{0,0,1,0}', 1);
INSERT INTO up VALUES (11, '{1,0,0,0}'), (1, '{0,1,0,0}'), (2, '{2,2,1,0}')
    ON CONFLICT (id) DO UPDATE SET emb = EXCLUDED.emb;
MERGE INTO up t USING (VALUES (12, '{0,0,1,0}'::real[]), (3, '{0,0,1,0}')) s(id, emb) ON t.id = s.id
    WHEN MATCHED THEN UPDATE SET emb = s.emb WHEN NOT MATCHED THEN INSERT VALUES (s.id, s.emb);
MERGE INTO up t USING (VALUES (4)) s(id) ON t.id = s.id WHEN MATCHED THEN DELETE;
SELECT rows FROM nnn.build_bias('up', 'emb', 'cap', 'emb', 'full_build', k => 2);
SELECT count(*) AS rows, count(*) FILTER (WHERE nnn_bias IS DISTINCT FROM full_build) AS differ FROM up;
SELECT id, round(score::numeric, 5) AS score FROM nnn_search('up', '{0,0,1,0}', 3) ORDER BY score DESC, id;
SELECT id, round(nnn_score(emb, '{0,0,1,0}', nnn_bias)::numeric, 5) AS score FROM up ORDER BY score DESC, id LIMIT 3;
SELECT nnn.drop_index('up', true);
DROP TABLE up;
TRUNCATE ci;
SELECT count(*) FROM nnn_search('ci', '{1,0,0,0}', 2);
INSERT INTO ci VALUES (1, '{1,1,0,0}');
SELECT id FROM nnn_search('ci', '{1,0,0,0}', 2);
SELECT nnn.prune_changes('ci') > 0 AS pruned;
SELECT count(*) FROM nnn.changes WHERE index_name = 'ci';
SELECT id FROM nnn_search('ci', '{1,0,0,0}', 2);
SELECT index_name, rows FROM nnn.cache_info() WHERE index_name = 'ci';
SET nnn.cache_mb = 0;
SELECT id FROM nnn_search('ci', '{1,0,0,0}', 2);
RESET nnn.cache_mb;
SELECT nnn.drop_index('ci');
