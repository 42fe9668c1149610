-- nnn.evaluate, nnn.tune, and an index's own alpha, on the reference package's toy data:
-- plain search ranks candidate 4 first for every query; NNN with k = 2 ranks each query's own.
CREATE EXTENSION nnn;
SET nnn.progress = off;
CREATE TABLE img (id int PRIMARY KEY, emb real[]);
INSERT INTO img VALUES (0,'{0,1,0,0}'),(1,'{1,0,0,0}'),(2,'{0,-1,0,0}'),(3,'{-1,0,0,0}'),(4,'{0,0,1,0}');
CREATE TABLE q (answer int, emb real[]);
INSERT INTO q VALUES (0,'{0,0.6,0.8,0}'),(1,'{0.6,0,0.8,0}'),(2,'{0,-0.6,0.8,0}'),(3,'{-0.6,0,0.8,0}'),(4,'{0,0,1,0}');
CREATE TABLE cap (emb real[]);
INSERT INTO cap SELECT ARRAY[emb[1], emb[2] + d, emb[3], emb[4]] FROM q, unnest(ARRAY[0.01, -0.01]::real[]) d;
INSERT INTO cap SELECT ARRAY[emb[1] + d, emb[2], emb[3], emb[4]] FROM q, unnest(ARRAY[0.01, -0.01]::real[]) d;
SELECT rows, k FROM nnn.create_index('toy', 'img', 'id', 'emb', 'cap', 'emb', k => 2);
-- every cell: recall in percent, MRR as a fraction
SELECT family, k, beta, alpha, round(recall_1::numeric, 2) r1, round(recall_5::numeric, 2) r5,
       round(mrr::numeric, 4) mrr, queries
FROM nnn.evaluate('toy', 'q', 'emb', 'answer', ks => '{1,2}', alphas => '{0.75}', families => '{nnn,dn,lse}',
                  betas => '{10}');
-- several right ids per query: an integer array column
CREATE TABLE q2 AS SELECT ARRAY[answer, 4] AS answers, emb FROM q;
SELECT family, alpha, recall_1 FROM nnn.evaluate('toy', 'q2', 'emb', 'answers', '{2}', '{0.75}');
-- the index's alpha: nnn.alpha until one is stored; a set nnn.alpha wins over the stored one
SELECT nnn.index_alpha('toy');
SELECT nnn.set_alpha('toy', 0.5);
SELECT alpha FROM nnn.indexes WHERE name = 'toy';
SELECT score FROM nnn_search('toy', '{0,0,1,0}', 1);
SET nnn.alpha = 0.75;
SELECT nnn.index_alpha('toy'), score FROM nnn_search('toy', '{0,0,1,0}', 1);
RESET nnn.alpha;
SELECT nnn.index_alpha('toy');
-- the ORDER BY path asks for the same alpha
SELECT nnn.query_vector('{0,0,1,0}'::real[], nnn.index_alpha('toy'));
SELECT nnn.set_alpha('toy', NULL);
-- errors
SELECT * FROM nnn.evaluate('toy', 'q', 'emb', 'answer', ks => '{21}');
SELECT * FROM nnn.evaluate('toy', 'q', 'emb', 'answer', ks => '{0}');
SELECT * FROM nnn.evaluate('toy', 'q', 'emb', 'answer', ks => '{}');
SELECT * FROM nnn.evaluate('toy', 'q', 'emb', 'answer', ks => '{2}', alphas => '{}');
SELECT * FROM nnn.evaluate('toy', 'q', 'emb', 'answer', ks => '{2}', families => '{qb}');
SELECT * FROM nnn.evaluate('toy', 'q', 'emb', 'answer', ks => '{2}', families => '{lse}', betas => '{-1}');
SELECT * FROM nnn.evaluate('toy', 'q', 'emb', 'nope', ks => '{2}');
SELECT * FROM nnn.evaluate('toy', 'q', 'answer', 'answer', ks => '{2}');
SELECT * FROM nnn.evaluate('toy', 'q', 'emb', 'emb', ks => '{2}');
SELECT * FROM nnn.evaluate('nope', 'q', 'emb', 'answer');
CREATE TABLE q_bad AS SELECT answer + 10 AS answer, emb FROM q;
SELECT * FROM nnn.evaluate('toy', 'q_bad', 'emb', 'answer', ks => '{2}');
CREATE TABLE q_null AS SELECT ARRAY[answer, NULL]::int[] AS answers, emb FROM q;
SELECT * FROM nnn.evaluate('toy', 'q_null', 'emb', 'answers', ks => '{2}');
CREATE TABLE q_dim AS SELECT answer, emb[1:3] AS emb FROM q;
SELECT * FROM nnn.evaluate('toy', 'q_dim', 'emb', 'answer', ks => '{2}');
SELECT * FROM nnn.tune('toy', 'q', 'emb', 'answer', '{1,2}', '{0.75}', metric => 'ndcg');
SELECT * FROM nnn.tune('toy', 'q', 'emb', 'answer', '{1,2}', '{0.75}', tune_fraction => 0);
SELECT * FROM nnn.tune('toy', 'q', 'emb', 'answer', '{1,2}', '{0.75}', tune_fraction => 0.01);
SELECT nnn.set_alpha('toy', 'Infinity');
SELECT nnn.set_alpha('toy', 2000);
-- declared honestly
SELECT proname, provolatile, proisstrict, proparallel FROM pg_proc
WHERE proname IN ('evaluate', 'tune', 'set_alpha', 'index_alpha') ORDER BY proname;
DROP EXTENSION nnn CASCADE;
