-- The candidate table's columns change type after nnn.create_index: the same answers, or a
-- clear error, never scores read from the wrong bits.
CREATE TABLE dr_img (id int PRIMARY KEY, emb real[]);
INSERT INTO dr_img VALUES (1, '{1,0}'), (2, '{0,1}'), (3, '{0.6,0.8}');
CREATE TABLE dr_ref (emb real[]);
INSERT INTO dr_ref VALUES ('{1,0}'), ('{0.8,0.6}');
SELECT rows FROM nnn.create_index('drift', 'dr_img', 'id', 'emb', 'dr_ref', 'emb', k => 1);
CREATE TEMP VIEW dr_top AS SELECT id, round(score::numeric, 5) AS score FROM nnn_search('drift', '{1,0}', 3);
SELECT * FROM dr_top;
ALTER TABLE dr_img ALTER COLUMN nnn_bias TYPE double precision;
SELECT * FROM dr_top;
ALTER TABLE dr_img ALTER COLUMN emb TYPE double precision[];
SELECT * FROM dr_top;
ALTER TABLE dr_img ALTER COLUMN id TYPE bigint;
SELECT * FROM dr_top;
-- the triggers go on working with the new types
INSERT INTO dr_img VALUES (4, '{0.8,0.6}');
SELECT id, round(nnn_bias::numeric, 5) AS bias FROM dr_img WHERE id = 4;
SELECT * FROM dr_top;
-- a reference set that is gone: searches go on, new and changed rows are a clear error
-- (nothing written), deletes go on
CREATE TABLE dr_ref2 AS SELECT * FROM dr_ref;
SELECT rows FROM nnn.create_index('drift2', 'dr_img', 'id', 'emb', 'dr_ref2', 'emb', k => 1, bias_column => 'bias2');
DROP TABLE dr_ref2;
SELECT count(*) FROM nnn_search('drift2', '{1,0}', 3);
INSERT INTO dr_img VALUES (5, '{0,1}');
UPDATE dr_img SET emb = '{0,1}' WHERE id = 4;
SELECT nnn.refresh('drift2');
DELETE FROM dr_img WHERE id = 4;
SELECT id FROM dr_img ORDER BY id;
SELECT nnn.drop_index('drift2', true);
INSERT INTO dr_img VALUES (4, '{0.8,0.6}');
-- a renamed column: searches and writes fail until the registry names it again, then go on
-- without a rebuild (a row with row 3's embedding gets row 3's bias)
ALTER TABLE dr_img RENAME COLUMN emb TO embedding;
SELECT * FROM dr_top;
INSERT INTO dr_img VALUES (6, '{0.6,0.8}');
UPDATE nnn.indexes SET embedding_column = 'embedding' WHERE name = 'drift';
SELECT * FROM dr_top;
INSERT INTO dr_img VALUES (6, '{0.6,0.8}');
SELECT id, round(nnn_bias::numeric, 5) AS bias FROM dr_img WHERE id IN (3, 6) ORDER BY id;
ALTER TABLE dr_img RENAME COLUMN embedding TO emb;
UPDATE nnn.indexes SET embedding_column = 'emb' WHERE name = 'drift';
-- a column that is gone
ALTER TABLE dr_img DROP COLUMN emb;
SELECT * FROM nnn_search('drift', '{1,0}', 3);
SELECT nnn.drop_index('drift');
DROP VIEW dr_top;
DROP TABLE dr_img, dr_ref;
