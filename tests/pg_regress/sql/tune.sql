-- nnn.evaluate, nnn.tune, and an index's own alpha, on the reference package's toy data:
-- plain search ranks candidate 4 first for every query; NNN with k = 2 ranks each query's own.
SET nnn.progress = off;
CREATE TABLE tn_img (id int PRIMARY KEY, emb real[]);
INSERT INTO tn_img VALUES (0,'{0,1,0,0}'),(1,'{1,0,0,0}'),(2,'{0,-1,0,0}'),(3,'{-1,0,0,0}'),(4,'{0,0,1,0}');
CREATE TABLE tn_q (answer int, emb real[]);
INSERT INTO tn_q VALUES (0,'{0,0.6,0.8,0}'),(1,'{0.6,0,0.8,0}'),(2,'{0,-0.6,0.8,0}'),(3,'{-0.6,0,0.8,0}'),(4,'{0,0,1,0}');
CREATE TABLE tn_cap (emb real[]);
INSERT INTO tn_cap SELECT ARRAY[emb[1], emb[2] + d, emb[3], emb[4]] FROM tn_q, unnest(ARRAY[0.01, -0.01]::real[]) d;
INSERT INTO tn_cap SELECT ARRAY[emb[1] + d, emb[2], emb[3], emb[4]] FROM tn_q, unnest(ARRAY[0.01, -0.01]::real[]) d;
SELECT rows, k FROM nnn.create_index('tn', 'tn_img', 'id', 'emb', 'tn_cap', 'emb', k => 2);
-- every cell: recall in percent, MRR as a fraction
SELECT family, k, beta, alpha, round(recall_1::numeric, 2) r1, round(recall_5::numeric, 2) r5,
       round(mrr::numeric, 4) mrr, queries
FROM nnn.evaluate('tn', 'tn_q', 'emb', 'answer', ks => '{1,2}', alphas => '{0.75}', families => '{nnn,dn,lse}',
                  betas => '{10}');
-- several right ids per query: an integer array column
CREATE TABLE tn_q2 AS SELECT ARRAY[answer, 4] AS answers, emb FROM tn_q;
SELECT family, alpha, recall_1 FROM nnn.evaluate('tn', 'tn_q2', 'emb', 'answers', '{2}', '{0.75}');
-- the index's alpha: nnn.alpha until one is stored; a set nnn.alpha wins over the stored one
SELECT nnn.index_alpha('tn');
SELECT nnn.set_alpha('tn', 0.5);
SELECT alpha FROM nnn.indexes WHERE name = 'tn';
SELECT score FROM nnn_search('tn', '{0,0,1,0}', 1);
SET nnn.alpha = 0.75;
SELECT nnn.index_alpha('tn'), score FROM nnn_search('tn', '{0,0,1,0}', 1);
RESET nnn.alpha;
SELECT nnn.index_alpha('tn');
-- the ORDER BY path asks for the same alpha
SELECT nnn.query_vector('{0,0,1,0}'::real[], nnn.index_alpha('tn'));
SELECT nnn.set_alpha('tn', NULL);
-- an index of another bias family: DN (the mean of all reference similarities) or
-- log-sum-exp at beta; new rows get theirs from the triggers
CREATE TABLE tn_img2 AS SELECT * FROM tn_img WHERE id < 4;
ALTER TABLE tn_img2 ADD PRIMARY KEY (id);
SELECT rows FROM nnn.create_index('tn_dn', 'tn_img2', 'id', 'emb', 'tn_cap', 'emb', family => 'dn');
INSERT INTO tn_img2 SELECT * FROM tn_img WHERE id = 4;
SELECT id, round(nnn_bias::numeric, 4) AS dn_bias FROM tn_img2 ORDER BY id;
SELECT family, k, beta FROM nnn.indexes WHERE name = 'tn_dn';
SELECT nnn.drop_index('tn_dn', true);
SELECT rows FROM nnn.create_index('tn_lse', 'tn_img2', 'id', 'emb', 'tn_cap', 'emb', family => 'lse', beta => 10);
SELECT id, round(nnn_bias::numeric, 4) AS lse_bias FROM tn_img2 ORDER BY id;
SELECT id, round(score::numeric, 4) FROM nnn_search('tn_lse', '{0,0.6,0.8,0}', 2);
SELECT nnn.drop_index('tn_lse', true);
-- errors
SELECT * FROM nnn.create_index('tn_bad', 'tn_img2', 'id', 'emb', 'tn_cap', 'emb', family => 'qb');
SELECT * FROM nnn.create_index('tn_bad', 'tn_img2', 'id', 'emb', 'tn_cap', 'emb', family => 'lse');
SELECT * FROM nnn.create_index('tn_bad', 'tn_img2', 'id', 'emb', 'tn_cap', 'emb', family => 'lse', beta => 0);
SELECT * FROM nnn.create_index('tn_bad', 'tn_img2', 'id', 'emb', 'tn_cap', 'emb', beta => 3);
SELECT * FROM nnn.evaluate('tn', 'tn_q', 'emb', 'answer', ks => '{21}');
SELECT * FROM nnn.evaluate('tn', 'tn_q', 'emb', 'answer', ks => '{0}');
SELECT * FROM nnn.evaluate('tn', 'tn_q', 'emb', 'answer', ks => '{}');
SELECT * FROM nnn.evaluate('tn', 'tn_q', 'emb', 'answer', ks => '{2}', alphas => '{}');
SELECT * FROM nnn.evaluate('tn', 'tn_q', 'emb', 'answer', ks => '{2}', families => '{qb}');
SELECT * FROM nnn.evaluate('tn', 'tn_q', 'emb', 'answer', ks => '{2}', families => '{lse}', betas => '{-1}');
SELECT * FROM nnn.evaluate('tn', 'tn_q', 'emb', 'nope', ks => '{2}');
SELECT * FROM nnn.evaluate('tn', 'tn_q', 'answer', 'answer', ks => '{2}');
SELECT * FROM nnn.evaluate('tn', 'tn_q', 'emb', 'emb', ks => '{2}');
SELECT * FROM nnn.evaluate('nope', 'tn_q', 'emb', 'answer');
CREATE TABLE tn_q_bad AS SELECT answer + 10 AS answer, emb FROM tn_q;
SELECT * FROM nnn.evaluate('tn', 'tn_q_bad', 'emb', 'answer', ks => '{2}');
CREATE TABLE tn_q_null AS SELECT ARRAY[answer, NULL]::int[] AS answers, emb FROM tn_q;
SELECT * FROM nnn.evaluate('tn', 'tn_q_null', 'emb', 'answers', ks => '{2}');
CREATE TABLE tn_q_dim AS SELECT answer, emb[1:3] AS emb FROM tn_q;
SELECT * FROM nnn.evaluate('tn', 'tn_q_dim', 'emb', 'answer', ks => '{2}');
SELECT * FROM nnn.tune('tn', 'tn_q', 'emb', 'answer', '{1,2}', '{0.75}', metric => 'ndcg');
SELECT * FROM nnn.tune('tn', 'tn_q', 'emb', 'answer', '{1,2}', '{0.75}', tune_fraction => 0);
SELECT * FROM nnn.tune('tn', 'tn_q', 'emb', 'answer', '{1,2}', '{0.75}', tune_fraction => 0.01);
SELECT nnn.set_alpha('tn', 'Infinity');
SELECT nnn.set_alpha('tn', 2000);
-- declared honestly
SELECT proname, provolatile, proisstrict, proparallel FROM pg_proc
WHERE proname IN ('evaluate', 'tune', 'set_alpha', 'index_alpha') ORDER BY proname;
SELECT nnn.drop_index('tn');
RESET nnn.progress;
DROP TABLE tn_img, tn_img2, tn_q, tn_cap, tn_q2, tn_q_bad, tn_q_null, tn_q_dim;
