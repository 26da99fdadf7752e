CREATE TABLE good_one (id integer);
