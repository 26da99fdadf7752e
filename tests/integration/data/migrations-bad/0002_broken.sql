CREATE TABLE half_done (id integer);
INSERT INTO half_done VALUES (1);
SELEC broken syntax here;
