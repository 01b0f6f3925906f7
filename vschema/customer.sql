CREATE TABLE IF NOT EXISTS customer (
  customer_id BIGINT NOT NULL,
  email VARBINARY(128),
  PRIMARY KEY (customer_id)
) ENGINE=InnoDB;
CREATE TABLE IF NOT EXISTS corder (
  order_id BIGINT NOT NULL,
  customer_id BIGINT,
  sku VARBINARY(128),
  price BIGINT,
  PRIMARY KEY (order_id)
) ENGINE=InnoDB;
