// An application's workload through Go's database/sql over
// go-sql-driver/mysql (server prepares and interpolated parameters, a
// pool, read-only and isolated transactions, LOAD DATA LOCAL from a
// reader, multi-statement results, contexts), sqlx and GORM v1 (its
// AutoMigrate reads information_schema), run against the gate and
// against one MariaDB; tests/drivers.rs compares the lines this prints.
// Usage: go run gosql.go PORT DATABASE PREFIX
package main

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/go-sql-driver/mysql"
	"github.com/jinzhu/gorm"
	_ "github.com/jinzhu/gorm/dialects/mysql"
	"github.com/jmoiron/sqlx"
)

var port, db, t = os.Args[1], os.Args[2], os.Args[3]

func show(v interface{}) string {
	switch x := v.(type) {
	case nil:
		return "NULL"
	case []byte:
		if utf8.Valid(x) {
			return "bytes:" + string(x)
		}
		return fmt.Sprintf("0x%x", x)
	case time.Time:
		return "Time:" + x.UTC().Format(time.RFC3339Nano)
	}
	return fmt.Sprintf("%T:%v", v, v)
}

// line prints every row of rows, each cell with its Go type.
func line(label string, rows *sql.Rows, err error) {
	check(err)
	defer rows.Close()
	n := 0
	for rows.Next() {
		fmt.Println(label, strings.Join(scanned(rows), " | "))
		n++
	}
	check(rows.Err())
	fmt.Println(label, "rows="+fmt.Sprint(n))
}

// scanned is the current row's cells, each shown with its Go type.
func scanned(rows *sql.Rows) []string {
	cols, _ := rows.Columns()
	cells := make([]interface{}, len(cols))
	ptrs := make([]interface{}, len(cols))
	for i := range cells {
		ptrs[i] = &cells[i]
	}
	check(rows.Scan(ptrs...))
	out := make([]string, len(cells))
	for i, c := range cells {
		out[i] = show(c)
	}
	return out
}

func check(err error) {
	if err != nil {
		fmt.Println("failed", err)
		os.Exit(1)
	}
}

// bad prints the error a statement meets: its MySQL number, or what
// database/sql says.
func bad(label string, err error) {
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		fmt.Println(label, "error", me.Number)
	} else {
		fmt.Println(label, "error", err)
	}
}

func value(i int) []interface{} {
	var name, amount, data interface{}
	switch {
	case i%11 == 0:
	case i%7 == 0:
		name = fmt.Sprintf("O'Brien \"%d\" \\ x", i)
	case i%5 == 0:
		name = fmt.Sprintf("ünïcødé-%d ✓", i)
	default:
		name = fmt.Sprintf("name-%d", i)
	}
	if i%13 != 0 {
		amount = fmt.Sprintf("%d.%02d", (i*37)%2000-1000, i%100)
	}
	born := time.Date(1950+i%60, time.Month(1+i%12), 1+i%28, 0, 0, 0, 0, time.UTC)
	seen := time.Date(2026, time.Month(1+i%12), 1+i%28, i%24, i%60, (i*7)%60, (i%1000)*1000000, time.UTC)
	sign := ""
	if i%17 == 0 {
		sign = "-"
	}
	dur := fmt.Sprintf("%s%02d:%02d:%02d", sign, i%100, i%60, i%59)
	if i%9 != 0 {
		data = []byte{byte(i % 256), 0xff, 0, byte((i * 3) % 256)}
	}
	note := fmt.Sprintf("note %d", i)
	if i%50 == 0 {
		note = strings.Repeat(fmt.Sprintf("long text %d; ", i), 2000)
	}
	return []interface{}{i * 37, name, amount, float64(i) * 0.25, born, seen, dur, data, i % 2, note}
}

func dsn(params string) string {
	return fmt.Sprintf("app@tcp(127.0.0.1:%s)/%s?charset=utf8mb4&parseTime=true&loc=UTC&%s", port, db, params)
}

// workload runs what an application does through one way of sending
// parameters (server prepares, or the driver's interpolation).
func workload(mode, params string) {
	d, err := sql.Open("mysql", dsn(params))
	check(err)
	defer d.Close()
	d.SetMaxOpenConns(4)
	ctx := context.Background()
	_, err = d.Exec("DELETE FROM " + t)
	check(err)
	ins, err := d.Prepare("INSERT INTO " + t + " (id, name, amount, ratio, born, seen, dur, data, flag, note) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
	check(err)
	var inserted int64
	for i := 1; i <= 200; i++ {
		r, err := ins.Exec(value(i)...)
		check(err)
		n, _ := r.RowsAffected()
		inserted += n
	}
	ins.Close()
	fmt.Println(mode, "inserted", inserted)
	for _, id := range []int{37, 370, 407, 1850, 999999} {
		rows, err := d.Query("SELECT * FROM "+t+" WHERE id = ?", id)
		line(fmt.Sprint(mode, " point ", id), rows, err)
	}
	rows, err := d.Query("SELECT id, name, amount FROM "+t+" WHERE amount > ? ORDER BY amount DESC, id LIMIT ?", "100.00", 20)
	line(mode+" top", rows, err)
	rows, err = d.Query("SELECT count(*), count(name), sum(amount), min(born), max(seen), avg(ratio), max(dur) FROM " + t)
	line(mode+" agg", rows, err)
	rows, err = d.Query("SELECT flag, count(*), max(name), sum(amount) FROM " + t + " GROUP BY flag ORDER BY flag")
	line(mode+" group", rows, err)
	rows, err = d.Query("SELECT id, data, dur FROM "+t+" WHERE id IN (?, ?, ?, ?) ORDER BY id", 74, 333, 1110, 7400)
	line(mode+" in", rows, err)
	rows, err = d.Query("SELECT count(*) FROM "+t+" WHERE name <=> ? OR seen > ?", nil, time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC))
	line(mode+" nullsafe", rows, err)
	rows, err = d.Query("SELECT id, born, seen FROM "+t+" WHERE born BETWEEN ? AND ? ORDER BY born, id LIMIT 5", time.Date(1960, 1, 1, 0, 0, 0, 0, time.UTC), "1970-01-01")
	line(mode+" dates", rows, err)

	rows, err = d.Query("SELECT * FROM " + t + " ORDER BY id")
	check(err)
	types, err := rows.ColumnTypes()
	check(err)
	for _, c := range types {
		length, _ := c.Length()
		prec, scale, _ := c.DecimalSize()
		nullable, _ := c.Nullable()
		fmt.Println(mode, "meta", c.Name(), c.DatabaseTypeName(), c.ScanType(), length, prec, scale, nullable)
	}
	n, total := 0, 0
	for rows.Next() {
		var raw [10]sql.RawBytes
		ptrs := make([]interface{}, 10)
		for i := range raw {
			ptrs[i] = &raw[i]
		}
		check(rows.Scan(ptrs...))
		for _, r := range raw {
			total += len(r)
		}
		n++
	}
	check(rows.Err())
	rows.Close()
	fmt.Println(mode, "all", n, total)

	tx, err := d.BeginTx(ctx, nil)
	check(err)
	r, err := tx.Exec("UPDATE "+t+" SET name = ? WHERE id = ?", "rolled back", 37)
	check(err)
	affected, _ := r.RowsAffected()
	fmt.Println(mode, "tx updated", affected)
	check(tx.Rollback())
	tx, err = d.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelReadCommitted})
	check(err)
	r, err = tx.Exec("UPDATE "+t+" SET amount = amount + 1 WHERE id IN (?, ?, ?)", 37, 74, 111)
	check(err)
	affected, _ = r.RowsAffected()
	fmt.Println(mode, "tx updated", affected)
	check(tx.Commit())
	rows, err = d.Query("SELECT id, name, amount FROM " + t + " WHERE id IN (37, 74, 111) ORDER BY id")
	line(mode+" after tx", rows, err)
	ro, err := d.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	check(err)
	rows, err = ro.Query("SELECT count(*), sum(amount) FROM " + t)
	line(mode+" read only", rows, err)
	_, err = ro.Exec("UPDATE " + t + " SET flag = 0 WHERE id = 37")
	bad(mode+" read only write", err)
	check(ro.Rollback())

	for k, sql := range []string{"INSERT INTO " + t + " (id) VALUES (37)", "SELEC 1", "SELECT nope FROM " + t, "SELECT * FROM nowhere"} {
		_, err := d.Exec(sql)
		bad(fmt.Sprint(mode, " bad ", k), err)
	}
	_, err = d.Prepare("SELECT nope FROM " + t + " WHERE id = ?")
	bad(mode+" bad prepare", err)
	rows, err = d.Query("SELECT count(*) FROM " + t)
	line(mode+" still", rows, err)

	_, err = d.Exec("DELETE FROM " + t + "_auto")
	check(err)
	var ids []int64
	for _, name := range []string{"a", "b", "c"} {
		r, err := d.Exec("INSERT INTO "+t+"_auto (name) VALUES (?)", name)
		check(err)
		id, _ := r.LastInsertId()
		ids = append(ids, id)
	}
	fmt.Println(mode, "auto ids", ids[1]-ids[0], ids[2]-ids[1])
	r, err = d.Exec("DELETE FROM "+t+" WHERE id > ?", 7000)
	check(err)
	affected, _ = r.RowsAffected()
	fmt.Println(mode, "deleted", affected)

	// A pool's statement, prepared on each of its connections in turn.
	st, err := d.Prepare("SELECT count(*) FROM " + t + " WHERE id <= ?")
	check(err)
	counts := make([]int, 40)
	var wg sync.WaitGroup
	for k := range counts {
		wg.Add(1)
		go func(k int) {
			defer wg.Done()
			check(st.QueryRow(k * 37).Scan(&counts[k]))
		}(k)
	}
	wg.Wait()
	st.Close()
	fmt.Println(mode, "pool", counts)

	// A deadline: the driver gives up on its connection, the pool goes on.
	tctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	_, err = d.ExecContext(tctx, "SELECT sleep(3) FROM "+t+" WHERE id = ?", 37)
	cancel()
	fmt.Println(mode, "deadline", errors.Is(err, context.DeadlineExceeded) || errors.Is(err, mysql.ErrInvalidConn))
	rows, err = d.Query("SELECT count(*) FROM " + t)
	line(mode+" after deadline", rows, err)
}

// changes runs the statements whose affected counts the DSN changes.
func changes() {
	for _, params := range []string{"", "clientFoundRows=true"} {
		d, err := sql.Open("mysql", dsn(params))
		check(err)
		for _, sql := range []string{"UPDATE " + t + " SET flag = flag WHERE id < 1000", "UPDATE " + t + " SET flag = 1 - flag WHERE id < 1000"} {
			r, err := d.Exec(sql)
			check(err)
			n, _ := r.RowsAffected()
			fmt.Println("changes", params, n)
		}
		d.Close()
	}
}

func multi() {
	d, err := sql.Open("mysql", dsn("multiStatements=true"))
	check(err)
	defer d.Close()
	rows, err := d.Query("SELECT count(*) AS n FROM " + t + "; SELECT id, name FROM " + t + " WHERE id = 74 OR id = 111 ORDER BY id; SELECT 'third'")
	check(err)
	for k := 0; ; k++ {
		cols, _ := rows.Columns()
		for rows.Next() {
			fmt.Println("multi", k, cols, strings.Join(scanned(rows), " | "))
		}
		if !rows.NextResultSet() {
			break
		}
	}
	check(rows.Err())
	rows.Close()
	r, err := d.Exec("UPDATE " + t + " SET note = 'multi' WHERE id = 74; UPDATE " + t + " SET note = 'multi' WHERE id IN (111, 148)")
	check(err)
	n, _ := r.RowsAffected()
	fmt.Println("multi exec", n)
}

// infile loads rows from a registered reader: LOAD DATA LOCAL.
func infile() {
	var b bytes.Buffer
	for i := 0; i < 300; i++ {
		fmt.Fprintf(&b, "%d\tinfile-%d\t%d.5\t%s\n", 9000+i, i, i, []string{`\N`, "2001-02-03"}[i%2])
	}
	mysql.RegisterReaderHandler("rows", func() io.Reader { return bytes.NewReader(b.Bytes()) })
	d, err := sql.Open("mysql", dsn(""))
	check(err)
	defer d.Close()
	r, err := d.Exec("LOAD DATA LOCAL INFILE 'Reader::rows' INTO TABLE " + t + " (id, name, amount, born)")
	check(err)
	n, _ := r.RowsAffected()
	fmt.Println("infile", n)
	rows, err := d.Query("SELECT count(*), sum(amount), count(born), min(name) FROM " + t + " WHERE id >= 9000")
	line("infile rows", rows, err)
	_, err = d.Exec("DELETE FROM " + t + " WHERE id >= 9000")
	check(err)
}

// Row is how sqlx fills a struct by column name.
type Row struct {
	ID     int64           `db:"id"`
	Name   sql.NullString  `db:"name"`
	Amount sql.NullFloat64 `db:"amount"`
	Born   time.Time       `db:"born"`
	Seen   mysql.NullTime  `db:"seen"`
	Dur    string          `db:"dur"`
}

func withSqlx() {
	x, err := sqlx.Connect("mysql", dsn(""))
	check(err)
	defer x.Close()
	var rows []Row
	check(x.Select(&rows, "SELECT id, name, amount, born, seen, dur FROM "+t+" WHERE id < ? ORDER BY id LIMIT 6", 1000))
	for _, r := range rows {
		fmt.Printf("sqlx select %+v\n", r)
	}
	var one Row
	err = x.Get(&one, "SELECT id, name, amount, born, seen, dur FROM "+t+" WHERE id = ?", 999999)
	fmt.Println("sqlx get missing", errors.Is(err, sql.ErrNoRows))
	q, args, err := sqlx.In("SELECT id, name FROM "+t+" WHERE id IN (?) ORDER BY id", []int{37, 74, 111, 185})
	check(err)
	var named []struct {
		ID   int64          `db:"id"`
		Name sql.NullString `db:"name"`
	}
	check(x.Select(&named, x.Rebind(q), args...))
	fmt.Printf("sqlx in %+v\n", named)
	res, err := x.NamedExec("UPDATE "+t+" SET note = :note WHERE id = :id", map[string]interface{}{"note": "named", "id": 185})
	check(err)
	n, _ := res.RowsAffected()
	fmt.Println("sqlx named", n)
}

// User and Order are GORM's models: AutoMigrate makes their tables.
type User struct {
	ID        uint64 `gorm:"primary_key"`
	Name      string `gorm:"size:64;index"`
	Email     *string
	Age       int
	Orders    []Order
	CreatedAt time.Time
	DeletedAt *time.Time
}

// Order belongs to a User, on the user's shard.
type Order struct {
	ID     uint64 `gorm:"primary_key"`
	UserID uint64 `gorm:"index"`
	Item   string
	Price  float64
}

func withGorm() {
	g, err := gorm.Open("mysql", dsn(""))
	check(err)
	defer g.Close()
	g.SingularTable(false)
	gorm.DefaultTableNameHandler = func(_ *gorm.DB, name string) string { return t + "_" + name }
	for pass := 0; pass < 2; pass++ {
		check(g.AutoMigrate(&User{}, &Order{}).Error)
	}
	fmt.Println("gorm tables", g.HasTable(&User{}), g.HasTable("nope"), g.Dialect().HasIndex(t+"_users", "idx_"+t+"_users_name"))
	var base uint64
	for i := 0; i < 12; i++ {
		email := fmt.Sprintf("u%d@example.com", i)
		u := User{Name: fmt.Sprintf("user-%02d", i%7), Age: 20 + i, CreatedAt: time.Date(2026, 1, 1+i, 0, 0, 0, 0, time.UTC)}
		if i%3 != 0 {
			u.Email = &email
		}
		for k := 0; k < i%4; k++ {
			u.Orders = append(u.Orders, Order{Item: fmt.Sprintf("item-%d-%d", i, k), Price: float64(i*10+k) + 0.5})
		}
		check(g.Create(&u).Error)
		if i == 0 {
			base = u.ID
		}
		fmt.Println("gorm created", u.ID-base, len(u.Orders))
	}
	var users []User
	check(g.Preload("Orders").Where("age > ?", 25).Order("name, id").Find(&users).Error)
	for _, u := range users {
		items := []string{}
		for _, o := range u.Orders {
			items = append(items, o.Item)
		}
		fmt.Println("gorm preload", u.ID-base, u.Name, u.Email != nil, items)
	}
	var count int
	check(g.Model(&User{}).Where("name LIKE ?", "user-0%").Count(&count).Error)
	fmt.Println("gorm count", count)
	var names []string
	check(g.Model(&User{}).Order("age desc").Limit(3).Pluck("name", &names).Error)
	fmt.Println("gorm pluck", names)
	type total struct {
		Name  string
		Spent float64
		N     int
	}
	var totals []total
	check(g.Table(t + "_users u").Select("u.name, sum(o.price) as spent, count(*) as n").
		Joins("join " + t + "_orders o on o.user_id = u.id").Group("u.name").Order("spent desc, u.name").Scan(&totals).Error)
	fmt.Printf("gorm totals %+v\n", totals)
	var first User
	check(g.Where("name = ?", "user-03").First(&first).Error)
	fmt.Println("gorm first", first.ID-base, first.Age, first.CreatedAt.UTC())
	err = g.Where("name = ?", "nobody").First(&User{}).Error
	fmt.Println("gorm missing", gorm.IsRecordNotFoundError(err))
	check(g.Model(&first).Updates(map[string]interface{}{"age": 99, "name": "renamed"}).Error)
	fmt.Println("gorm updated", g.Model(&User{}).Where("age = 99").Updates(map[string]interface{}{"age": 98}).RowsAffected)
	check(g.Delete(&first).Error)
	var left, all int
	g.Model(&User{}).Count(&left)
	g.Unscoped().Model(&User{}).Count(&all)
	fmt.Println("gorm soft delete", left, all)
	var made User
	check(g.Where(User{Name: "newcomer"}).Attrs(User{Age: 7}).FirstOrCreate(&made).Error)
	check(g.Where(User{Name: "newcomer"}).Attrs(User{Age: 8}).FirstOrCreate(&made).Error)
	fmt.Println("gorm first or create", made.Age)
	err = g.Transaction(func(tx *gorm.DB) error {
		if err := tx.Model(&Order{}).Where("price < ?", 50).Update("price", gorm.Expr("price * 2")).Error; err != nil {
			return err
		}
		return errors.New("roll back")
	})
	fmt.Println("gorm transaction", err)
	var sum float64
	check(g.Model(&Order{}).Select("sum(price)").Row().Scan(&sum))
	fmt.Println("gorm prices", sum)
}

func main() {
	workload("server", "")
	workload("interpolated", "interpolateParams=true")
	changes()
	multi()
	infile()
	withSqlx()
	withGorm()
	fmt.Println("done")
}
