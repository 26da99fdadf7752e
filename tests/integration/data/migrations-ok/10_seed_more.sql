-- numeric order: runs after 9_seed.sql although "10" sorts first as text
INSERT INTO seeded SELECT n + 1 FROM seeded;
