CREATE TABLE seeded (n integer NOT NULL);
INSERT INTO seeded VALUES (1);
