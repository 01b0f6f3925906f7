<?php
// An application's PDO and mysqli workload (PHP's mysqlnd), run against
// the gate and against one MariaDB; tests/drivers.rs compares the lines
// this prints. Usage: php pdo.php PORT DATABASE TABLE
[$_, $port, $db, $t] = $argv;
mysqli_report(MYSQLI_REPORT_OFF);

function show($v) {
    if ($v === null) return 'NULL';
    if (is_string($v) && !preg_match('//u', $v)) return '0x' . bin2hex($v);
    return gettype($v) . ':' . $v;
}
function line($label, $rows) {
    foreach ($rows as $r) echo $label, ' ', implode(' | ', array_map('show', $r)), "\n";
    echo $label, ' rows=', count($rows), "\n";
}
function err($label, $e) {
    $info = $e instanceof PDOException ? $e->errorInfo : [$e->sqlstate, $e->errno];
    echo $label, ' error sqlstate=', $info[0], ' code=', $info[1], "\n";
}
function value($i) {
    $name = $i % 11 == 0 ? null : ($i % 7 == 0 ? "O'Brien \"$i\" \\ x" : ($i % 5 == 0 ? "ünïcødé-$i ✓" : "name-$i"));
    $amount = $i % 13 == 0 ? null : sprintf('%d.%02d', ($i * 37) % 2000 - 1000, $i % 100);
    $born = sprintf('%04d-%02d-%02d', 1950 + $i % 60, 1 + $i % 12, 1 + $i % 28);
    $seen = sprintf('2026-%02d-%02d %02d:%02d:%02d.%03d', 1 + $i % 12, 1 + $i % 28, $i % 24, $i % 60, ($i * 7) % 60, $i % 1000);
    $dur = sprintf('%s%02d:%02d:%02d', $i % 17 == 0 ? '-' : '', $i % 100, $i % 60, $i % 59);
    $data = $i % 9 == 0 ? null : chr($i % 256) . "\xff\x00" . chr(($i * 3) % 256);
    $note = $i % 50 == 0 ? str_repeat("long text $i; ", 2000) : "note $i";
    return [$i * 37, $name, $amount, $i * 0.25, $born, $seen, $dur, $data, $i % 2, $note];
}

foreach ([false, true] as $emulate) {
    $tag = $emulate ? 'emulated' : 'server';
    $pdo = new PDO("mysql:host=127.0.0.1;port=$port;dbname=$db;charset=utf8mb4", 'app', '', [
        PDO::ATTR_ERRMODE => PDO::ERRMODE_EXCEPTION,
        PDO::ATTR_EMULATE_PREPARES => $emulate,
        PDO::ATTR_STRINGIFY_FETCHES => false,
    ]);
    $pdo->exec("DELETE FROM $t");
    $ins = $pdo->prepare("INSERT INTO $t (id, name, amount, ratio, born, seen, dur, data, flag, note) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
    for ($i = 1; $i <= 200; $i++) {
        $v = value($i);
        foreach ($v as $k => $x) {
            $type = $x === null ? PDO::PARAM_NULL : ($k == 7 ? PDO::PARAM_LOB : (is_int($x) ? PDO::PARAM_INT : PDO::PARAM_STR));
            $ins->bindValue($k + 1, $x, $type);
        }
        $ins->execute();
    }
    echo "$tag inserted ", $ins->rowCount(), "\n";

    $point = $pdo->prepare("SELECT * FROM $t WHERE id = ?");
    foreach ([37, 370, 407, 1850, 999999] as $id) {
        $point->execute([$id]);
        line("$tag point $id", $point->fetchAll(PDO::FETCH_NUM));
    }
    $q = $pdo->prepare("SELECT id, name, amount FROM $t WHERE amount > ? ORDER BY amount DESC, id LIMIT 20");
    $q->execute(['100.00']);
    line("$tag top", $q->fetchAll(PDO::FETCH_NUM));
    line("$tag agg", $pdo->query("SELECT count(*), count(name), sum(amount), min(born), max(seen), avg(ratio), max(dur) FROM $t")->fetchAll(PDO::FETCH_NUM));
    line("$tag group", $pdo->query("SELECT flag, count(*), max(name), sum(amount) FROM $t GROUP BY flag ORDER BY flag")->fetchAll(PDO::FETCH_NUM));
    $in = $pdo->prepare("SELECT id, data, dur FROM $t WHERE id IN (?, ?, ?, ?) ORDER BY id");
    $in->execute([74, 333, 1110, 7400]);
    line("$tag in", $in->fetchAll(PDO::FETCH_NUM));
    $null = $pdo->prepare("SELECT count(*) FROM $t WHERE name <=> ?");
    $null->bindValue(1, null, PDO::PARAM_NULL);
    $null->execute();
    line("$tag nullsafe", $null->fetchAll(PDO::FETCH_NUM));

    $all = $pdo->query("SELECT * FROM $t ORDER BY id");
    for ($c = 0; $c < $all->columnCount(); $c++) {
        $m = $all->getColumnMeta($c);
        echo "$tag meta $c ", $m['name'], ' ', $m['native_type'] ?? '-', ' ', $m['len'], ' ', $m['precision'], ' ', implode(',', $m['flags']), "\n";
    }
    $n = 0;
    $sum = 0;
    while ($r = $all->fetch(PDO::FETCH_NUM)) {
        $n++;
        $sum += strlen(implode('', array_map('strval', $r)));
        if ($n % 40 == 0) line("$tag row", [$r]);
    }
    echo "$tag all $n $sum\n";

    $pdo->beginTransaction();
    $u = $pdo->prepare("UPDATE $t SET name = ? WHERE id = ?");
    $u->execute(['rolled back', 37]);
    echo "$tag tx updated ", $u->rowCount(), "\n";
    $pdo->rollBack();
    $pdo->beginTransaction();
    $u = $pdo->prepare("UPDATE $t SET amount = amount + 1 WHERE id IN (?, ?, ?)");
    $u->execute([37, 74, 111]);
    echo "$tag tx updated ", $u->rowCount(), "\n";
    $pdo->commit();
    line("$tag after tx", $pdo->query("SELECT id, name, amount FROM $t WHERE id IN (37, 74, 111) ORDER BY id")->fetchAll(PDO::FETCH_NUM));

    echo "$tag unchanged ", $pdo->exec("UPDATE $t SET flag = flag WHERE id < 1000"), "\n";
    echo "$tag changed ", $pdo->exec("UPDATE $t SET flag = 1 - flag WHERE id < 1000"), "\n";
    foreach (["INSERT INTO $t (id) VALUES (37)", "SELEC 1", "SELECT nope FROM $t", "SELECT * FROM nowhere"] as $k => $sql) {
        try {
            $pdo->exec($sql);
            echo "$tag bad $k ran\n";
        } catch (PDOException $e) {
            err("$tag bad $k", $e);
        }
    }
    line("$tag still", $pdo->query("SELECT count(*) FROM $t")->fetchAll(PDO::FETCH_NUM));

    $pdo->exec("DELETE FROM {$t}_auto");
    $a = $pdo->prepare("INSERT INTO {$t}_auto (name) VALUES (?)");
    $ids = [];
    foreach (['a', 'b', 'c'] as $name) {
        $a->execute([$name]);
        $ids[] = $pdo->lastInsertId();
    }
    echo "$tag auto ids ", count(array_unique($ids)), ' ', $ids[1] - $ids[0], ' ', $ids[2] - $ids[1], "\n";
    line("$tag auto rows", $pdo->query("SELECT name FROM {$t}_auto ORDER BY id")->fetchAll(PDO::FETCH_NUM));
    $d = $pdo->prepare("DELETE FROM $t WHERE id > ?");
    $d->execute([7000]);
    echo "$tag deleted ", $d->rowCount(), "\n";
}

$my = new mysqli('127.0.0.1', 'app', '', $db, (int)$port);
$my->set_charset('utf8mb4');
if ($my->multi_query("SELECT count(*) FROM $t; SELECT id, name FROM $t WHERE id = 74; UPDATE $t SET note = 'multi' WHERE id = 74")) {
    $k = 0;
    do {
        if ($res = $my->store_result()) {
            line("mysqli multi $k", $res->fetch_all(MYSQLI_NUM));
            $res->free();
        } else {
            echo "mysqli multi $k affected ", $my->affected_rows, "\n";
        }
        $k++;
    } while ($my->more_results() && $my->next_result());
}
if ($my->errno) echo "mysqli multi error ", $my->sqlstate, ' ', $my->errno, "\n";
$st = $my->prepare("SELECT id, name, amount, seen, data FROM $t WHERE id BETWEEN ? AND ? ORDER BY id");
$lo = 100; $hi = 400;
$st->bind_param('ii', $lo, $hi);
$st->execute();
$st->bind_result($id, $name, $amount, $seen, $data);
$rows = [];
while ($st->fetch()) $rows[] = [$id, $name, $amount, $seen, $data];
line('mysqli range', $rows);
$st->close();
$res = $my->query("SELECT id, note FROM $t ORDER BY id", MYSQLI_USE_RESULT);
$n = 0;
while ($r = $res->fetch_row()) $n += strlen($r[1]);
$res->free();
echo "mysqli unbuffered $n\n";
if (!$my->query("INSERT INTO $t (id) VALUES (74)")) echo "mysqli dup ", $my->sqlstate, ' ', $my->errno, "\n";
echo "mysqli ping ", $my->ping() ? 'yes' : 'no', "\n";
echo "mysqli select_db ", $my->select_db($db) ? 'yes' : 'no', "\n";
line('mysqli still', $my->query("SELECT count(*) FROM $t")->fetch_all(MYSQLI_NUM));
// A pool's hand-over: COM_CHANGE_USER resets the session.
$my->query("SET @v = 5");
$my->begin_transaction();
$my->query("UPDATE $t SET name = 'not kept' WHERE id = 74");
echo "mysqli change_user ", $my->change_user('app', '', $db) ? 'yes' : 'no', "\n";
line('mysqli after change_user', $my->query("SELECT @v, database(), name FROM $t WHERE id = 74")->fetch_all(MYSQLI_NUM));

// A latin1 client: its bytes are latin1 on the way in and out.
$l = new PDO("mysql:host=127.0.0.1;port=$port;dbname=$db;charset=latin1", 'app', '', [
    PDO::ATTR_ERRMODE => PDO::ERRMODE_EXCEPTION,
]);
$l->prepare("UPDATE $t SET name = ? WHERE id = ?")->execute(["caf\xe9 cr\xe8me", 74]);
$l->exec("UPDATE $t SET name = 'na\xefve \xa3' WHERE id = 111");
line('latin1 read', $l->query("SELECT id, name, hex(name), length(name) FROM $t WHERE id IN (74, 111) ORDER BY id")->fetchAll(PDO::FETCH_NUM));
line('latin1 match', $l->query("SELECT count(*) FROM $t WHERE name = 'caf\xe9 cr\xe8me'")->fetchAll(PDO::FETCH_NUM));
$u = new PDO("mysql:host=127.0.0.1;port=$port;dbname=$db;charset=utf8mb4", 'app', '');
line('utf8 read', $u->query("SELECT id, name, hex(name) FROM $t WHERE id IN (74, 111) ORDER BY id")->fetchAll(PDO::FETCH_NUM));
echo "done\n";
