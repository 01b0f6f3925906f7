CREATE TABLE IF NOT EXISTS product (
  sku VARBINARY(128),
  description VARBINARY(128),
  price BIGINT,
  PRIMARY KEY (sku)
) ENGINE=InnoDB;
CREATE TABLE IF NOT EXISTS customer_seq (id INT, next_id BIGINT, cache BIGINT, PRIMARY KEY (id)) COMMENT 'vitess_sequence';
INSERT IGNORE INTO customer_seq (id, next_id, cache) VALUES (0, 1, 1000);
CREATE TABLE IF NOT EXISTS order_seq (id INT, next_id BIGINT, cache BIGINT, PRIMARY KEY (id)) COMMENT 'vitess_sequence';
INSERT IGNORE INTO order_seq (id, next_id, cache) VALUES (0, 1, 1000);
CREATE TABLE IF NOT EXISTS sbtest1_seq (id INT, next_id BIGINT, cache BIGINT, PRIMARY KEY (id)) COMMENT 'vitess_sequence';
INSERT IGNORE INTO sbtest1_seq (id, next_id, cache) VALUES (0, 1, 1000);
CREATE TABLE IF NOT EXISTS sbtest2_seq (id INT, next_id BIGINT, cache BIGINT, PRIMARY KEY (id)) COMMENT 'vitess_sequence';
INSERT IGNORE INTO sbtest2_seq (id, next_id, cache) VALUES (0, 1, 1000);
CREATE TABLE IF NOT EXISTS sbtest3_seq (id INT, next_id BIGINT, cache BIGINT, PRIMARY KEY (id)) COMMENT 'vitess_sequence';
INSERT IGNORE INTO sbtest3_seq (id, next_id, cache) VALUES (0, 1, 1000);
CREATE TABLE IF NOT EXISTS sbtest4_seq (id INT, next_id BIGINT, cache BIGINT, PRIMARY KEY (id)) COMMENT 'vitess_sequence';
INSERT IGNORE INTO sbtest4_seq (id, next_id, cache) VALUES (0, 1, 1000);
