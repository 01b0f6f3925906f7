# An application's ActiveRecord (Rails 6.1) workload over the mysql2 gem
# (libmariadb): its schema made with ActiveRecord::Schema (its
# schema_migrations and ar_internal_metadata tables too), then the queries
# a Rails app writes. Run against the gate and against one MariaDB;
# tests/drivers.rs compares the lines this prints.
# Usage: ruby active_record.rb PORT DATABASE PREFIX
require "active_record"
require "bigdecimal"

port, db = ARGV[0].to_i, ARGV[1]
ActiveRecord::Base.establish_connection(adapter: "mysql2", host: "127.0.0.1", port: port, username: "app",
                                        password: "", database: db, encoding: "utf8mb4")
ActiveRecord::Migration.verbose = false
ActiveRecord::Schema.define(version: 20261206) do
  create_table :drv_rb_shops, force: true do |t|
    t.string :name, null: false
    t.decimal :revenue, precision: 10, scale: 2
    t.datetime :opened_at
    t.boolean :active, default: true
  end
  create_table :drv_rb_orders, force: true do |t|
    t.bigint :shop_id, null: false
    t.string :status, null: false, default: "new"
    t.integer :amount
    t.index [:shop_id, :status]
  end
end

class Shop < ActiveRecord::Base
  self.table_name = "drv_rb_shops"
  has_many :orders, foreign_key: :shop_id, dependent: :destroy
end

class Order < ActiveRecord::Base
  self.table_name = "drv_rb_orders"
  belongs_to :shop
end

def show(label, value)
  puts "#{label} #{value.inspect}"
end

names = ["alpha", "Alpha", "beta", "éclair", "Eclair", "gamma", "O'Hara", "zeta"]
shops = (1..24).map do |i|
  Shop.create!(name: "#{names[i % names.size]} #{i}", revenue: BigDecimal("#{(i * 41) % 1000}.#{format('%02d', i % 100)}"),
               opened_at: Time.utc(2026, 1 + i % 12, 1 + i % 28, i % 24, i % 60), active: i % 5 != 0)
end
base = shops.first.id
show "created", shops.map { |s| s.id - base }
Order.insert_all((0...96).map { |i| { shop_id: shops[i % 24].id, status: %w[new paid shipped][i % 3], amount: (i * 37) % 500 } })
show "orders", Order.count
show "schema", [ActiveRecord::SchemaMigration.all.map(&:version), ActiveRecord::InternalMetadata[:environment]]
show "columns", Shop.columns.map { |c| [c.name, c.sql_type, c.null] }
show "indexes", ActiveRecord::Base.connection.indexes("drv_rb_orders").map { |i| [i.name, i.columns] }
show "table_exists", [ActiveRecord::Base.connection.table_exists?("drv_rb_shops"), ActiveRecord::Base.connection.table_exists?("nope")]
show "like", Shop.where("name LIKE ?", "a%").order(:name).pluck(:name, :revenue)
show "where", Shop.where(active: true).where("revenue > ?", 500).order(revenue: :desc).limit(4).pluck(:name)
show "preload", Shop.includes(:orders).order(:name).limit(4).map { |s| [s.name, s.orders.map(&:amount).sort] }
show "eager_load", Shop.eager_load(:orders).where(drv_rb_orders: { status: "paid" }).order("drv_rb_shops.name").limit(3)
  .map { |s| [s.name, s.orders.map(&:amount).sort] }
show "joins", Shop.joins(:orders).where(drv_rb_orders: { status: "shipped" }).distinct.count
show "group", Order.group(:status).order(:status).count
show "group_sum", Shop.joins(:orders).group("drv_rb_shops.name").order(Arel.sql("sum(drv_rb_orders.amount) desc, drv_rb_shops.name")).limit(5).sum("drv_rb_orders.amount")
show "aggregates", [Order.sum(:amount), Order.average(:amount).round(4), Order.maximum(:amount), Order.minimum(:amount)]
show "find", [Shop.find(shops[3].id).name, Shop.find_by(name: "zeta 7")&.revenue, Shop.find_by(name: "nobody")]
show "first_last", [Shop.order(:name).first.name, Shop.order(:name).last.name, Shop.first.id - base, Shop.last.id - base]
show "exists", [Shop.exists?(name: "gamma 5"), Order.where(amount: 10_000).exists?]
batches = []
Shop.find_in_batches(batch_size: 7) { |b| batches << b.map { |s| s.id - base } }
show "batches", batches
show "pluck_distinct", Order.distinct.order(:status).pluck(:status)
show "update_all", Order.where(status: "new").where("amount < ?", 100).update_all("amount = amount + 1")
Shop.transaction do
  Shop.where(name: "beta 2").update_all(revenue: 1)
  raise ActiveRecord::Rollback
end
show "rolled_back", Shop.find_by(name: "beta 2").revenue
Shop.transaction do
  Shop.where(name: "beta 10").update_all(revenue: 2)
  begin
    Shop.transaction(requires_new: true) do
      Shop.where(name: "beta 10").update_all(revenue: 3)
      raise "undo the savepoint"
    end
  rescue RuntimeError
    nil
  end
end
show "savepoint", Shop.find_by(name: "beta 10").revenue
victim = Shop.find_by(name: "gamma 5")
victim.destroy
show "destroyed", [Shop.count, Order.count, Order.where(shop_id: victim.id).count]
made = Shop.find_or_create_by!(name: "new shop") { |s| s.revenue = 5 }
show "find_or_create", [made.id - base, Shop.find_or_create_by!(name: "new shop").id - base]
s = Shop.find_by(name: "new shop")
s.update!(revenue: 12.5, active: false)
show "updated", Shop.where(name: "new shop").pluck(:revenue, :active)
begin
  Shop.create!(id: s.id, name: "duplicate")
rescue ActiveRecord::RecordNotUnique => e
  show "not_unique", e.cause.error_number
end
show "delete_all", Order.where(status: "shipped").delete_all
show "raw", ActiveRecord::Base.connection.select_rows("SELECT status, count(*) FROM drv_rb_orders GROUP BY status ORDER BY status")
puts "done"
