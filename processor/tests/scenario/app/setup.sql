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
-- The N+1 scenario's variants: one cheap lookup per product.
CREATE TABLE variants (product_id int NOT NULL, price numeric NOT NULL);
INSERT INTO variants SELECT g, g % 100 FROM generate_series(1, 1000) g;
CREATE INDEX ON variants (product_id);
-- The plan flip's invoices: found by index, 100 rows per customer among a
-- million, until random_page_cost makes the planner scan the table.
CREATE TABLE invoices (id bigint PRIMARY KEY, customer_id int NOT NULL, amount numeric NOT NULL, memo text);
INSERT INTO invoices SELECT g, g % 10000, g % 500, repeat('x', 40) FROM generate_series(1, 1000000) g;
CREATE INDEX ON invoices (customer_id);
VACUUM ANALYZE;
