// An application's JDBC workload through MariaDB Connector/J (server and
// client prepared statements, batches, metadata, transactions, streaming),
// run against the gate and against one MariaDB; tests/drivers.rs compares
// the lines this prints. Usage: java -cp mariadb-java-client.jar
// Jdbc.java PORT DATABASE TABLE
import java.math.BigDecimal;
import java.sql.*;
import java.util.*;

public class Jdbc {
    static String show(Object v) {
        if (v == null) return "NULL";
        if (v instanceof byte[]) {
            StringBuilder s = new StringBuilder("0x");
            for (byte b : (byte[]) v) s.append(String.format("%02x", b));
            return s.toString();
        }
        return v.getClass().getSimpleName() + ":" + v;
    }

    static int print(String label, ResultSet rs) throws SQLException {
        int n = 0, cols = rs.getMetaData().getColumnCount();
        while (rs.next()) {
            StringJoiner j = new StringJoiner(" | ");
            for (int c = 1; c <= cols; c++) j.add(show(rs.getObject(c)));
            System.out.println(label + " " + j);
            n++;
        }
        System.out.println(label + " rows=" + n);
        return n;
    }

    static Object[] value(int i) {
        String name = i % 11 == 0 ? null : i % 7 == 0 ? "O'Brien \"" + i + "\" \\ x" : i % 5 == 0 ? "ünïcødé-" + i + " ✓" : "name-" + i;
        BigDecimal amount = i % 13 == 0 ? null : new BigDecimal(String.format("%d.%02d", (i * 37) % 2000 - 1000, i % 100));
        java.sql.Date born = java.sql.Date.valueOf(String.format("%04d-%02d-%02d", 1950 + i % 60, 1 + i % 12, 1 + i % 28));
        Timestamp seen = Timestamp.valueOf(String.format("2026-%02d-%02d %02d:%02d:%02d.%03d", 1 + i % 12, 1 + i % 28, i % 24, i % 60, (i * 7) % 60, i % 1000));
        String dur = String.format("%s%02d:%02d:%02d", i % 17 == 0 ? "-" : "", i % 100, i % 60, i % 59);
        byte[] data = i % 9 == 0 ? null : new byte[] {(byte) (i % 256), (byte) 0xff, 0, (byte) ((i * 3) % 256)};
        String note = i % 50 == 0 ? ("long text " + i + "; ").repeat(2000) : "note " + i;
        return new Object[] {(long) i * 37, name, amount, i * 0.25, born, seen, dur, data, i % 2, note};
    }

    static void bad(Statement st, String label, String sql) {
        try {
            st.execute(sql);
            System.out.println(label + " ran");
        } catch (SQLException e) {
            System.out.println(label + " error " + e.getSQLState() + " " + e.getErrorCode() + " " + e.getClass().getSimpleName());
        }
    }

    public static void main(String[] args) throws Exception {
        String port = args[0], db = args[1], t = args[2];
        for (String mode : new String[] {"server", "client"}) {
            String url = "jdbc:mariadb://127.0.0.1:" + port + "/" + db + "?user=app&password=&useServerPrepStmts="
                + (mode.equals("server")) + "&rewriteBatchedStatements=" + mode.equals("client") + "&allowMultiQueries=true";
            try (Connection c = DriverManager.getConnection(url)) {
                Statement st = c.createStatement();
                st.executeUpdate("DELETE FROM " + t);
                PreparedStatement ins = c.prepareStatement("INSERT INTO " + t + " (id, name, amount, ratio, born, seen, dur, data, flag, note) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
                for (int i = 1; i <= 200; i++) {
                    Object[] v = value(i);
                    for (int k = 0; k < v.length; k++) {
                        if (v[k] == null) ins.setNull(k + 1, k == 7 ? Types.VARBINARY : Types.VARCHAR);
                        else ins.setObject(k + 1, v[k]);
                    }
                    ins.addBatch();
                }
                int[] counts = ins.executeBatch();
                System.out.println(mode + " batch " + counts.length + " " + Arrays.stream(counts).sum());
                PreparedStatement point = c.prepareStatement("SELECT * FROM " + t + " WHERE id = ?");
                for (long id : new long[] {37, 370, 407, 1850, 999999}) {
                    point.setLong(1, id);
                    print(mode + " point " + id, point.executeQuery());
                }
                PreparedStatement top = c.prepareStatement("SELECT id, name, amount FROM " + t + " WHERE amount > ? ORDER BY amount DESC, id LIMIT 20");
                top.setBigDecimal(1, new BigDecimal("100.00"));
                print(mode + " top", top.executeQuery());
                print(mode + " agg", st.executeQuery("SELECT count(*), count(name), sum(amount), min(born), max(seen), avg(ratio), max(dur) FROM " + t));
                print(mode + " group", st.executeQuery("SELECT flag, count(*), max(name), sum(amount) FROM " + t + " GROUP BY flag ORDER BY flag"));
                PreparedStatement in = c.prepareStatement("SELECT id, data, dur FROM " + t + " WHERE id IN (?, ?, ?, ?) ORDER BY id");
                long[] ids = {74, 333, 1110, 7400};
                for (int k = 0; k < ids.length; k++) in.setLong(k + 1, ids[k]);
                print(mode + " in", in.executeQuery());
                PreparedStatement all = c.prepareStatement("SELECT * FROM " + t + " ORDER BY id");
                ResultSet rs = all.executeQuery();
                ResultSetMetaData md = rs.getMetaData();
                for (int k = 1; k <= md.getColumnCount(); k++) {
                    System.out.println(mode + " meta " + md.getColumnLabel(k) + " " + md.getTableName(k) + " " + md.getColumnTypeName(k) + " "
                        + md.getColumnType(k) + " " + md.getPrecision(k) + " " + md.getScale(k) + " " + md.isNullable(k) + " " + md.isSigned(k)
                        + " " + md.getColumnClassName(k) + " " + md.isAutoIncrement(k));
                }
                int n = 0;
                long len = 0;
                while (rs.next()) {
                    n++;
                    for (int k = 1; k <= md.getColumnCount(); k++) len += show(rs.getObject(k)).length();
                }
                System.out.println(mode + " all " + n + " " + len);
                c.setAutoCommit(false);
                PreparedStatement u = c.prepareStatement("UPDATE " + t + " SET name = ? WHERE id = ?");
                u.setString(1, "rolled back");
                u.setLong(2, 37);
                System.out.println(mode + " tx updated " + u.executeUpdate());
                c.rollback();
                System.out.println(mode + " tx updated " + st.executeUpdate("UPDATE " + t + " SET amount = amount + 1 WHERE id IN (37, 74, 111)"));
                c.commit();
                c.setAutoCommit(true);
                print(mode + " after tx", st.executeQuery("SELECT id, name, amount FROM " + t + " WHERE id IN (37, 74, 111) ORDER BY id"));
                System.out.println(mode + " unchanged " + st.executeUpdate("UPDATE " + t + " SET flag = flag WHERE id < 1000"));
                System.out.println(mode + " changed " + st.executeUpdate("UPDATE " + t + " SET flag = 1 - flag WHERE id < 1000"));
                bad(st, mode + " bad 0", "INSERT INTO " + t + " (id) VALUES (37)");
                bad(st, mode + " bad 1", "SELEC 1");
                bad(st, mode + " bad 2", "SELECT nope FROM " + t);
                bad(st, mode + " bad 3", "SELECT * FROM nowhere");
                try {
                    PreparedStatement p = c.prepareStatement("SELECT nope FROM " + t + " WHERE id = ?");
                    p.setLong(1, 1);
                    p.executeQuery();
                } catch (SQLException e) {
                    System.out.println(mode + " bad prepare " + e.getSQLState() + " " + e.getErrorCode());
                }
                boolean more = st.execute("SELECT count(*) FROM " + t + "; SELECT id, name FROM " + t + " WHERE id = 74; UPDATE " + t + " SET note = 'multi' WHERE id = 74");
                for (int k = 0; more || st.getUpdateCount() != -1; k++) {
                    if (more) print(mode + " multi " + k, st.getResultSet());
                    else System.out.println(mode + " multi " + k + " updated " + st.getUpdateCount());
                    more = st.getMoreResults();
                }
                PreparedStatement a = c.prepareStatement("INSERT INTO " + t + "_auto (name) VALUES (?)", Statement.RETURN_GENERATED_KEYS);
                long[] keys = new long[2];
                for (int k = 0; k < 2; k++) {
                    a.setString(1, "n" + k);
                    a.executeUpdate();
                    ResultSet g = a.getGeneratedKeys();
                    g.next();
                    keys[k] = g.getLong(1);
                }
                System.out.println(mode + " auto " + (keys[1] - keys[0]));
                Statement stream = c.createStatement();
                stream.setFetchSize(10);
                ResultSet sr = stream.executeQuery("SELECT id, note FROM " + t + " ORDER BY id");
                long streamed = 0;
                while (sr.next()) streamed += sr.getString(2).length();
                System.out.println(mode + " streamed " + streamed);
                // Savepoints, isolation and the catalog, as an ORM sets them.
                c.setTransactionIsolation(Connection.TRANSACTION_READ_COMMITTED);
                System.out.println(mode + " isolation " + c.getTransactionIsolation());
                c.setAutoCommit(false);
                st.executeUpdate("UPDATE " + t + " SET name = 'kept' WHERE id = 148");
                Savepoint sp = c.setSavepoint("before_drop");
                st.executeUpdate("UPDATE " + t + " SET name = 'undone' WHERE id IN (148, 185)");
                c.rollback(sp);
                st.executeUpdate("UPDATE " + t + " SET name = 'after savepoint' WHERE id = 185");
                c.commit();
                c.setAutoCommit(true);
                print(mode + " savepoint", st.executeQuery("SELECT id, name FROM " + t + " WHERE id IN (148, 185) ORDER BY id"));
                c.setCatalog("commerce");
                System.out.println(mode + " catalog " + c.getCatalog());
                c.setCatalog(db);
                System.out.println(mode + " valid " + c.isValid(2) + " " + c.getCatalog());
                DatabaseMetaData dm = c.getMetaData();
                System.out.println(mode + " product " + dm.getDatabaseProductName());
                print(mode + " still", st.executeQuery("SELECT count(*) FROM " + t));
            }
        }
        System.out.println("done");
    }
}
