-- Tables of the scenario application. orders.customer_email deliberately has
-- no index: /search scans the whole table (scenario 2).
CREATE EXTENSION IF NOT EXISTS pg_stat_statements;
CREATE TABLE products (id int PRIMARY KEY, name text NOT NULL, price numeric NOT NULL);
INSERT INTO products SELECT g, 'product ' || g, g % 100 FROM generate_series(1, 1000) g;
CREATE TABLE orders (id bigint PRIMARY KEY, customer_email text NOT NULL, total numeric NOT NULL, note text);
INSERT INTO orders SELECT g, 'user' || (g % 50000) || '@example.com', g % 1000, md5(g::text)
    FROM generate_series(1, 300000) g;
CREATE TABLE stock (sku text PRIMARY KEY, qty int NOT NULL);
INSERT INTO stock VALUES ('hot', 100000000), ('cold', 100000000);
VACUUM ANALYZE;
