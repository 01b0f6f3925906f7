//! Protocol edge cases real clients produce, and hostile bytes, against the
//! real shardgate binary in front of a real cluster.

mod common;

use common::*;
use mysql_async::prelude::Queryable;

const MORE_RESULTS: u16 = 0x0008;

fn query(sql: &str) -> Vec<u8> {
    let mut p = vec![0x03];
    p.extend_from_slice(sql.as_bytes());
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_commands_all_run_in_order() {
    let c = cluster();
    let mut raw = RawClient::connect(c.port, Some("commerce")).await;
    // Three commands in one TCP write, as drivers and sysbench do at times.
    let mut bytes = RawClient::frame(0, &query("select 1"));
    bytes.extend(RawClient::frame(0, &[0x0e])); // COM_PING
    bytes.extend(RawClient::frame(0, &query("select 'third'")));
    raw.write_raw(&bytes).await;
    assert_eq!(
        raw.read_result().await,
        Some(RawResult::Rows {
            cells: vec![Some("1".into())],
            status: 0x0002
        })
    );
    assert_eq!(
        raw.read_result().await,
        Some(RawResult::Ok { status: 0x0002 })
    );
    assert_eq!(
        raw.read_result().await,
        Some(RawResult::Rows {
            cells: vec![Some("third".into())],
            status: 0x0002
        })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_statement_results_carry_more_results_flags() {
    let c = cluster();
    let mut raw = RawClient::connect(c.port, Some("commerce")).await;
    raw.write_packet(0, &query("select 1; set @a = 1; select 2"))
        .await;
    let r1 = raw.read_result().await.unwrap();
    let r2 = raw.read_result().await.unwrap();
    let r3 = raw.read_result().await.unwrap();
    match (&r1, &r2, &r3) {
        (
            RawResult::Rows { status: s1, .. },
            RawResult::Ok { status: s2 },
            RawResult::Rows { status: s3, cells },
        ) => {
            assert_ne!(s1 & MORE_RESULTS, 0);
            assert_ne!(s2 & MORE_RESULTS, 0);
            assert_eq!(s3 & MORE_RESULTS, 0);
            assert_eq!(cells, &vec![Some("2".to_string())]);
        }
        other => panic!("{other:?}"),
    }
    // The connection is in step: the next command gets its own answer.
    raw.write_packet(0, &[0x0e]).await;
    assert!(matches!(
        raw.read_result().await,
        Some(RawResult::Ok { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_packets_get_errors_never_a_crash() {
    let c = cluster();
    let mut raw = RawClient::connect(c.port, Some("commerce")).await;
    // Empty command packet.
    raw.write_packet(0, &[]).await;
    assert!(matches!(
        raw.read_result().await,
        Some(RawResult::Err { .. })
    ));
    // Unknown command.
    raw.write_packet(0, &[0x55, 1, 2, 3]).await;
    assert_eq!(raw.read_result().await, Some(RawResult::Err { code: 1047 }));
    // COM_STMT_EXECUTE for a statement that does not exist, and truncated.
    raw.write_packet(0, &[0x17, 9, 9, 9, 9, 0, 1, 0, 0, 0])
        .await;
    assert_eq!(raw.read_result().await, Some(RawResult::Err { code: 1243 }));
    raw.write_packet(0, &[0x17, 1]).await;
    assert!(matches!(
        raw.read_result().await,
        Some(RawResult::Err { .. })
    ));
    // A prepared statement executed with truncated parameters.
    raw.write_packet(0, &{
        let mut p = vec![0x16];
        p.extend_from_slice(b"select ? + ?");
        p
    })
    .await;
    let (_, prep) = raw.read_packet().await.unwrap();
    assert_eq!(prep[0], 0);
    let id = u32::from_le_bytes([prep[1], prep[2], prep[3], prep[4]]);
    // Two parameter definitions and their EOF follow.
    for _ in 0..3 {
        raw.read_packet().await.unwrap();
    }
    let ncols = u16::from_le_bytes([prep[5], prep[6]]);
    if ncols > 0 {
        for _ in 0..=ncols {
            raw.read_packet().await.unwrap();
        }
    }
    let mut exec = vec![0x17];
    exec.extend_from_slice(&id.to_le_bytes());
    exec.extend_from_slice(&[0, 1, 0, 0, 0, 0, 1, 8, 0, 8, 0, 1, 2]);
    raw.write_packet(0, &exec).await;
    assert!(matches!(
        raw.read_result().await,
        Some(RawResult::Err { .. })
    ));
    // Still serving this connection.
    raw.write_packet(0, &query("select 5")).await;
    assert!(matches!(
        raw.read_result().await,
        Some(RawResult::Rows { .. })
    ));

    // A packet cut short by the client's hang-up ends the connection quietly.
    raw.write_raw(&[0xff, 0xff, 0x00, 0, 1, 2, 3]).await;
    {
        use tokio::io::AsyncWriteExt;
        raw.stream.shutdown().await.unwrap();
    }
    let mut closed = false;
    for _ in 0..3 {
        if raw.read_packet().await.is_none() {
            closed = true;
            break;
        }
    }
    assert!(closed);

    // Garbage instead of a handshake response.
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", c.port))
        .await
        .unwrap();
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut buf = [0u8; 512];
        let _ = s.read(&mut buf).await.unwrap();
        s.write_all(&RawClient::frame(1, &[1, 2, 3])).await.unwrap();
        let n = s.read(&mut buf).await.unwrap_or(0);
        assert!(n == 0 || buf[4] == 0xFF, "expected an error or a close");
    }
    // A truncated packet followed by a hang-up.
    let mut raw = RawClient::connect(c.port, None).await;
    raw.write_raw(&[10, 0, 0, 0, 3, b's']).await;
    drop(raw);

    // The server is still up and answering.
    let mut conn = connect(Some("commerce")).await;
    assert_eq!(
        rows(&mut conn, "select 9").await,
        vec![vec![Some("9".into())]]
    );
}

/// Logging in to `port` as `user` with `pass`, on `commerce`.
fn login(port: u16, user: &str, pass: &str) -> mysql_async::OptsBuilder {
    mysql_async::OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(port)
        .user(Some(user))
        .pass(Some(pass))
        .db_name(Some("commerce"))
        .prefer_socket(false)
}

/// A gate of its own with `static` users: alice (password `s3cret`) and
/// bob (`secret`, as its mysql_native_password hash); its MySQL port.
async fn static_auth_gate() -> u16 {
    let file = temp_dir("auth").join("auth.json");
    std::fs::write(
        &file,
        r#"{"alice": [{"Password": "s3cret", "UserData": "alice"}],
            "bob": {"MysqlNativePassword": "*14E65567ABDB5135D0CFD9A70B3032C179A49EE7"}}"#,
    )
    .unwrap();
    let (port, _) = spawn_shardgate(&[
        "--mysql-auth-server-impl".into(),
        "static".into(),
        "--mysql-auth-server-static-file".into(),
        file.display().to_string(),
    ])
    .await;
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_is_1045() {
    let port = static_auth_gate().await;
    let e = mysql_async::Conn::new(login(port, "alice", "wrong"))
        .await
        .unwrap_err();
    assert_eq!(err_code(&e), Some(1045), "{e}");
    assert!(e.to_string().contains("alice"), "{e}");
    let e = mysql_async::Conn::new(login(port, "mallory", "s3cret"))
        .await
        .unwrap_err();
    assert_eq!(err_code(&e), Some(1045));
    let mut ok = mysql_async::Conn::new(login(port, "alice", "s3cret"))
        .await
        .unwrap();
    assert_eq!(
        rows(&mut ok, "select 1").await,
        vec![vec![Some("1".into())]]
    );
    let mut ok = mysql_async::Conn::new(login(port, "bob", "secret"))
        .await
        .unwrap();
    assert_eq!(
        rows(&mut ok, "select 2").await,
        vec![vec![Some("2".into())]]
    );
    // The mysql client too.
    let out = std::process::Command::new("mysql")
        .args([
            "-h127.0.0.1",
            &format!("-P{port}"),
            "-ualice",
            "-pnope",
            "-e",
            "select 1",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("ERROR 1045 (28000)"));
}

/// COM_CHANGE_USER (a pool handing a connection to another user, or
/// cleaning it) resets the session and logs the new user in, as MySQL
/// does: the old user's transaction is rolled back and its variables are
/// gone, the new database is used, and a wrong password is 1045 and the
/// end of the connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_user_resets_the_session_and_logs_the_new_user_in() {
    let port = static_auth_gate().await;
    let mut setup = connect(Some("commerce")).await;
    setup
        .query_drop("create table if not exists chu_t (id int primary key)")
        .await
        .unwrap();
    setup.query_drop("delete from chu_t").await.unwrap();
    let opts = login(port, "alice", "s3cret");
    let mut conn = mysql_async::Conn::new(opts.clone()).await.unwrap();
    conn.query_drop("set @v = 5").await.unwrap();
    conn.query_drop("begin").await.unwrap();
    conn.query_drop("insert into chu_t values (1)")
        .await
        .unwrap();
    let to = |user: &str, pass: &str, db: &str| {
        mysql_async::ChangeUserOpts::default()
            .with_user(Some(user.into()))
            .with_pass(Some(pass.into()))
            .with_db_name(Some(db.into()))
    };
    conn.change_user(to("bob", "secret", "customer"))
        .await
        .unwrap();
    let seen: Option<(Option<String>, Option<i64>)> =
        conn.query_first("select database(), @v").await.unwrap();
    assert_eq!(seen, Some((Some("customer".into()), None)));
    assert_eq!(
        count(&mut setup, "chu_t").await,
        0,
        "the insert was rolled back"
    );
    // Back to alice, with no database: the session names none.
    conn.change_user(to("alice", "s3cret", "")).await.unwrap();
    let db: Option<Option<String>> = conn.query_first("select database()").await.unwrap();
    assert_eq!(db, Some(None));
    conn.query_drop("use commerce").await.unwrap();
    assert_eq!(count(&mut conn, "chu_t").await, 0);
    // A wrong password: refused, and the connection is closed.
    let e = conn
        .change_user(to("bob", "wrong", "commerce"))
        .await
        .unwrap_err();
    assert_eq!(err_code(&e), Some(1045), "{e}");
    assert!(conn.query_drop("select 1").await.is_err());
    // The server goes on.
    let mut again = mysql_async::Conn::new(opts).await.unwrap();
    assert_eq!(
        rows(&mut again, "select 3").await,
        vec![vec![Some("3".into())]]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unix_socket_listener_serves_the_mysql_client() {
    let dir = temp_dir("sock");
    let sock = dir.join("shardgate.sock");
    let _ = spawn_shardgate(&[
        "--mysql-server-socket-path".into(),
        sock.display().to_string(),
    ])
    .await;
    let out = std::process::Command::new("mysql")
        .args([
            "-S",
            &sock.display().to_string(),
            "-uapp",
            "--batch",
            "commerce",
            "-e",
            "select database(), 1+1",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "database()\t1+1\ncommerce\t2\n"
    );
}

/// MariaDB's MARIADB_CLIENT_CACHE_METADATA (as libmariadb and mysql_async
/// ask for it): shardgate offers it in the greeting; every column count
/// then carries a "metadata follows" byte, and an execution of a prepared
/// statement whose client already got its columns sends none, with the
/// rows still right. With CLIENT_DEPRECATE_EOF no EOF follows definitions
/// (or their absence) and a result ends with an OK in 0xFE clothing;
/// without it, as MariaDB 10.11 answers, an EOF follows the count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_metadata_skips_repeated_column_definitions() {
    const CACHE_METADATA: u32 = 1 << 4;
    let c = cluster();
    for deprecate_eof in [false, true] {
        let (mut raw, hs) =
            RawClient::connect_with(c.port, Some("commerce"), CACHE_METADATA, deprecate_eof).await;
        // Extended capabilities sit after the version string, 4 + 8 + 1 +
        // 2 + 1 + 2 + 2 + 1 + 6 bytes on; CLIENT_MYSQL (bit 0) is clear.
        let version_end = hs[1..].iter().position(|&b| b == 0).unwrap() + 2;
        let caps_low = u16::from_le_bytes([hs[version_end + 13], hs[version_end + 14]]);
        assert_eq!(caps_low & 1, 0);
        let ext_at = version_end + 27;
        let ext = u32::from_le_bytes(hs[ext_at..ext_at + 4].try_into().unwrap());
        assert_ne!(ext & CACHE_METADATA, 0, "greeting {hs:02x?}");
        let end = |p: &[u8]| {
            assert_eq!(p[0], 0xFE, "{p:02x?}");
            // EOF: 5 bytes; its OK form: 0xFE, 0 rows, 0 id, status, warnings.
            assert_eq!(p.len(), if deprecate_eof { 7 } else { 5 }, "{p:02x?}");
        };

        // A text result: count, "metadata follows", definitions, (EOF),
        // row, end.
        raw.write_packet(0, &query("select 'a' as x")).await;
        assert_eq!(raw.read_packet().await.unwrap().1, vec![1, 1]);
        let (_, def) = raw.read_packet().await.unwrap();
        assert!(def.starts_with(b"\x03def"), "{def:02x?}");
        if !deprecate_eof {
            end(&raw.read_packet().await.unwrap().1);
        }
        assert_eq!(raw.read_packet().await.unwrap().1, b"\x01a".to_vec());
        end(&raw.read_packet().await.unwrap().1);

        // Prepare `select ?`, then execute it with strings.
        let mut prepare = vec![0x16];
        prepare.extend_from_slice(b"select ? as v");
        raw.write_packet(0, &prepare).await;
        let (_, ok) = raw.read_packet().await.unwrap();
        assert_eq!(ok[0], 0, "{ok:02x?}");
        let id = ok[1..5].to_vec();
        // One parameter and one column, each followed by an EOF unless
        // CLIENT_DEPRECATE_EOF.
        for _ in 0..if deprecate_eof { 2 } else { 4 } {
            raw.read_packet().await.unwrap();
        }
        // `select ?`'s column is as wide as the value: the fourth
        // execution's definition differs and goes out again.
        for (i, value) in ["one", "two", "six", "three"].iter().enumerate() {
            let mut exec = vec![0x17];
            exec.extend_from_slice(&id);
            exec.extend_from_slice(&[0, 1, 0, 0, 0, 0, 1, 0xFE, 0]);
            exec.push(value.len() as u8);
            exec.extend_from_slice(value.as_bytes());
            raw.write_packet(0, &exec).await;
            let (_, count) = raw.read_packet().await.unwrap();
            if i == 0 || i == 3 {
                // The first execution's columns go out (shardgate does not
                // count the prepare's), the same ones again do not.
                assert_eq!(count, vec![1, 1]);
                let (_, def) = raw.read_packet().await.unwrap();
                assert!(def.starts_with(b"\x03def"), "{def:02x?}");
            } else {
                assert_eq!(count, vec![1, 0], "execution {i}");
            }
            if !deprecate_eof {
                end(&raw.read_packet().await.unwrap().1);
            }
            let (_, row) = raw.read_packet().await.unwrap();
            // Binary row: header, NULL bitmap, the string.
            let mut want = vec![0, 0, value.len() as u8];
            want.extend_from_slice(value.as_bytes());
            assert_eq!(row, want, "execution {i}");
            end(&raw.read_packet().await.unwrap().1);
        }
        // Still in step.
        raw.write_packet(0, &[0x0e]).await;
        assert!(matches!(
            raw.read_result().await,
            Some(RawResult::Ok { .. })
        ));
    }
}

/// Certificates for the TLS tests, made by the `openssl` tool in a temp
/// dir: a CA; two server certificates for 127.0.0.1 from it (the second
/// for a rotation); a client certificate from it; and a second CA with a
/// client certificate of its own, which nobody trusts.
struct Certs {
    dir: std::path::PathBuf,
}

impl Certs {
    fn make() -> Certs {
        let dir = temp_dir("tls");
        let run = |args: &[&str]| {
            let out = std::process::Command::new("openssl")
                .args(args)
                .current_dir(&dir)
                .output()
                .expect("run openssl");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        for ca in ["ca", "other-ca"] {
            let mut args = vec!["req", "-x509", "-days", "2", "-subj"];
            let subject = format!("/CN=shardgate-test-{ca}");
            args.push(&subject);
            args.extend(ec);
            let (key, pem) = (format!("{ca}.key"), format!("{ca}.pem"));
            args.extend(["-keyout", &key, "-out", &pem]);
            run(&args);
        }
        std::fs::write(
            dir.join("server.ext"),
            "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
        for (name, ca, ext) in [
            ("server-1", "ca", "server.ext"),
            ("server-2", "ca", "server.ext"),
            ("client", "ca", "client.ext"),
            ("stranger", "other-ca", "client.ext"),
        ] {
            let subject = format!("/CN=shardgate-test-{name}");
            let (key, csr, pem) = (
                format!("{name}.key"),
                format!("{name}.csr"),
                format!("{name}.pem"),
            );
            let mut args = vec!["req", "-subj", &subject];
            args.extend(ec);
            args.extend(["-keyout", &key, "-out", &csr]);
            run(&args);
            let (ca_pem, ca_key) = (format!("{ca}.pem"), format!("{ca}.key"));
            run(&[
                "x509",
                "-req",
                "-days",
                "2",
                "-in",
                &csr,
                "-CA",
                &ca_pem,
                "-CAkey",
                &ca_key,
                "-CAcreateserial",
                "-extfile",
                ext,
                "-out",
                &pem,
            ]);
        }
        Certs { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    /// The flags of a gate serving the first server certificate and
    /// asking clients for one from the CA.
    fn serving_with_ca(&self) -> Vec<String> {
        vec![
            "--mysql_server_ssl_cert".into(),
            self.path("server-1.pem"),
            "--mysql_server_ssl_key".into(),
            self.path("server-1.key"),
            "--mysql_server_ssl_ca".into(),
            self.path("ca.pem"),
        ]
    }
}

/// mysql_async over TLS, trusting `ca`, with a client certificate and key
/// when given.
async fn tls_driver(
    port: u16,
    ca: &str,
    identity: Option<(String, String)>,
) -> Result<mysql_async::Conn, mysql_async::Error> {
    let ssl = mysql_async::SslOpts::default()
        .with_root_certs(vec![std::path::PathBuf::from(ca).into()])
        .with_client_identity(identity.map(|(cert, key)| {
            mysql_async::ClientIdentity::new(
                std::path::PathBuf::from(cert).into(),
                std::path::PathBuf::from(key).into(),
            )
        }));
    let opts = mysql_async::OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(port)
        .user(Some("app"))
        .db_name(Some("commerce"))
        .prefer_socket(false)
        .ssl_opts(Some(ssl));
    mysql_async::Conn::new(opts).await
}

/// The `mysql` client against shardgate's port with `args` in front.
fn mysql_cli(port: u16, args: &[&str], sql: &str) -> std::process::Output {
    std::process::Command::new("mysql")
        .args(["-h127.0.0.1", &format!("-P{port}"), "-uapp", "--batch"])
        .args(args)
        .args(["commerce", "-e", sql])
        .output()
        .unwrap()
}

fn stdout(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// vtgate's `--mysql_server_ssl_cert`/`_key`: the `mysql` client gets a
/// TLS session when it asks, verifies the server's certificate against
/// the CA, and reads the same rows as a client in the clear (a result of
/// many TLS records); a client that does not ask, or a driver without
/// TLS, is served in the clear; one that trusts another CA is refused by
/// its own check. SIGHUP reads rotated files: new connections see the new
/// certificate, connections already open go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_clients_are_served_encrypted_and_certificates_reload() {
    let certs = Certs::make();
    let (cert, key) = (certs.path("live.pem"), certs.path("live.key"));
    std::fs::copy(certs.path("server-1.pem"), &cert).unwrap();
    std::fs::copy(certs.path("server-1.key"), &key).unwrap();
    let (port, web, pid) = spawn_shardgate_pid(&[
        "--mysql_server_ssl_cert".into(),
        cert.clone(),
        "--mysql_server_ssl_key".into(),
        key.clone(),
    ])
    .await;
    let ca = certs.path("ca.pem");
    let verified = ["--ssl", "--ssl-ca", &ca, "--ssl-verify-server-cert"];

    let status = stdout(&mysql_cli(port, &verified, "status"));
    assert!(status.contains("Cipher in use is"), "{status}");
    let status = stdout(&mysql_cli(port, &["--skip-ssl"], "status"));
    assert!(status.contains("Not in use"), "{status}");

    // 20,000 rows of up to 300 bytes: many TLS records, same bytes.
    let sql = "select seq, repeat('x', seq % 300) from seq_1_to_20000";
    let secure = stdout(&mysql_cli(port, &verified, sql));
    let plain = stdout(&mysql_cli(port, &["--skip-ssl"], sql));
    assert_eq!(secure.lines().count(), 20_001);
    assert!(secure == plain, "rows differ over TLS");

    // A driver that asks for TLS runs prepared statements over it (the
    // binary protocol) and reads what a driver in the clear reads.
    let mut driver = connect_port(port, Some("commerce")).await;
    let mut secure = tls_driver(port, &ca, None).await.unwrap();
    let sql = "select seq, repeat('y', seq % 500) from seq_1_to_10000 where seq > ?";
    let over_tls: Vec<(u64, String)> = secure.exec(sql, (7,)).await.unwrap();
    assert_eq!(over_tls.len(), 9_993);
    let in_clear: Vec<(u64, String)> = driver.exec(sql, (7,)).await.unwrap();
    assert!(over_tls == in_clear, "rows differ over TLS");
    // ... and is left usable by an error, as in the clear.
    let e = secure
        .query_drop("select * from no_such_table")
        .await
        .unwrap_err();
    assert_eq!(err_code(&e), Some(1146), "{e}");
    assert_eq!(
        rows(&mut secure, "select 5").await,
        vec![vec![Some("5".into())]]
    );
    // An SSL request followed by bytes that are no TLS hello, or by
    // nothing before the client hangs up: the connection closes, nothing
    // else is disturbed.
    for junk in [
        &b"GET / HTTP/1.0\r\n\r\n"[..],
        &[0x16, 0x03, 0x01, 0xff, 0xff, 1, 2][..],
        &[][..],
    ] {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut raw = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        let mut greeting = vec![0u8; 512];
        assert!(raw.read(&mut greeting).await.unwrap() > 0);
        // CLIENT_SSL | PROTOCOL_41 | SECURE_CONNECTION, max packet, utf8mb4.
        let mut req = (0x0800u32 | 0x0200 | 0x8000).to_le_bytes().to_vec();
        req.extend((1u32 << 24).to_le_bytes());
        req.push(45);
        req.extend([0u8; 23]);
        raw.write_all(&RawClient::frame(1, &req)).await.unwrap();
        raw.write_all(junk).await.unwrap();
        if junk.is_empty() {
            drop(raw);
            continue;
        }
        let mut rest = Vec::new();
        let closed = tokio::time::timeout(
            std::time::Duration::from_secs(15),
            raw.read_to_end(&mut rest),
        )
        .await;
        assert!(closed.is_ok(), "not closed after {junk:?}");
    }
    assert!(debug_var_at(web, "TlsHandshakesFailed").await >= 2);
    // A driver without TLS ignores the offer and is served in the clear.
    assert_eq!(
        rows(&mut driver, "select 1 + 1").await,
        vec![vec![Some("2".into())]]
    );

    // A client that trusts only another CA refuses the certificate.
    let other = certs.path("other-ca.pem");
    let out = mysql_cli(
        port,
        &["--ssl", "--ssl-ca", &other, "--ssl-verify-server-cert"],
        "select 1",
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("ERROR 2026"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Rotation: new files, SIGHUP; a new handshake shows the new
    // certificate, the driver's connection from before still works.
    let subject = || {
        let out = std::process::Command::new("openssl")
            .args([
                "s_client",
                "-starttls",
                "mysql",
                "-connect",
                &format!("127.0.0.1:{port}"),
                "-CAfile",
                &ca,
            ])
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        ["server-1", "server-2"]
            .into_iter()
            .find(|s| all.contains(&format!("CN = shardgate-test-{s}")))
            .unwrap_or_else(|| panic!("no server certificate in: {all}"))
    };
    assert_eq!(subject(), "server-1");
    std::fs::copy(certs.path("server-2.pem"), &cert).unwrap();
    std::fs::copy(certs.path("server-2.key"), &key).unwrap();
    unsafe { libc::kill(pid, libc::SIGHUP) };
    let reloaded = eventually(10, || async move {
        (debug_var_at(web, "TlsReloads").await == 1).then_some(())
    })
    .await;
    assert!(reloaded.is_some(), "SIGHUP did not reload");
    assert_eq!(subject(), "server-2");
    let status = stdout(&mysql_cli(port, &verified, "status"));
    assert!(status.contains("Cipher in use is"), "{status}");
    assert_eq!(
        rows(&mut driver, "select 3").await,
        vec![vec![Some("3".into())]]
    );

    // A reload that fails keeps the certificate that serves.
    std::fs::write(&cert, "garbage\n").unwrap();
    unsafe { libc::kill(pid, libc::SIGHUP) };
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(debug_var_at(web, "TlsReloads").await, 1);
    assert_eq!(subject(), "server-2");

    assert!(debug_var_at(web, "TlsConnectionsAccepted").await >= 6);
    assert!(debug_var_at(web, "TlsHandshakesFailed").await >= 1);
    assert_eq!(debug_var_at(web, "InsecureConnectionsRefused").await, 0);
}

/// `--mysql_server_require_secure_transport` refuses TCP clients in the
/// clear with 3159 (the `mysql` client and a driver), serves the Unix
/// socket in the clear; `--mysql_server_ssl_ca` makes a client
/// certificate from that CA the price of a TLS session. Flags that would
/// leave the server half-secured stop it at start, naming the fault.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secure_transport_and_client_certificates_are_required_when_asked() {
    let certs = Certs::make();
    let sock = certs.dir.join("sg.sock").display().to_string();
    let (port, web) = spawn_shardgate(
        &[
            certs.serving_with_ca(),
            vec![
                "--mysql_server_require_secure_transport".into(),
                "--mysql-server-socket-path".into(),
                sock.clone(),
            ],
        ]
        .concat(),
    )
    .await;
    let out = mysql_cli(port, &["--skip-ssl"], "select 1");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("ERROR 3159 (HY000)")
            && err.contains("server does not allow insecure connections"),
        "{err}"
    );
    let e = try_connect_port(port, Some("commerce")).await.unwrap_err();
    assert_eq!(err_code(&e), Some(3159), "{e}");
    // A driver: refused without a client certificate, in with one.
    let ca = certs.path("ca.pem");
    assert!(tls_driver(port, &ca, None).await.is_err());
    let identity = (certs.path("client.pem"), certs.path("client.key"));
    let mut driver = tls_driver(port, &ca, Some(identity)).await.unwrap();
    assert_eq!(
        rows(&mut driver, "select 6").await,
        vec![vec![Some("6".into())]]
    );

    // The `mysql` client's TLS options, with certificate `name` (and its
    // key) when given.
    let tls_as = |name: Option<&str>| {
        let mut args: Vec<String> = ["--ssl", "--ssl-ca", &ca, "--ssl-verify-server-cert"]
            .map(String::from)
            .to_vec();
        if let Some(name) = name {
            args.extend(["--ssl-cert".into(), certs.path(&format!("{name}.pem"))]);
            args.extend(["--ssl-key".into(), certs.path(&format!("{name}.key"))]);
        }
        args
    };
    fn strs(v: &[String]) -> Vec<&str> {
        v.iter().map(String::as_str).collect()
    }
    // No client certificate, or one from a CA the server does not trust.
    for name in [None, Some("stranger")] {
        let out = mysql_cli(port, &strs(&tls_as(name)), "select 1");
        assert!(
            !out.status.success(),
            "{name:?}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    // The CA's client certificate is let in.
    let with_client = tls_as(Some("client"));
    let with_client = strs(&with_client);
    assert_eq!(
        stdout(&mysql_cli(port, &with_client, "select 40 + 2")),
        "40 + 2\n42\n"
    );
    // The Unix socket is local: served in the clear.
    let out = std::process::Command::new("mysql")
        .args([
            "-S", &sock, "-uapp", "--batch", "commerce", "-e", "select 7",
        ])
        .output()
        .unwrap();
    assert_eq!(stdout(&out), "7\n7\n");

    assert_eq!(debug_var_at(web, "InsecureConnectionsRefused").await, 2);
    assert!(debug_var_at(web, "TlsHandshakesFailed").await >= 2);
    assert!(debug_var_at(web, "TlsConnectionsAccepted").await >= 1);

    // vtgate's `clientcert`: the certificate's common name is the user.
    let (port, _) = spawn_shardgate(
        &[
            certs.serving_with_ca(),
            vec!["--mysql_auth_server_impl=clientcert".into()],
        ]
        .concat(),
    )
    .await;
    let as_user = |user: &str, cert: &[&str]| {
        std::process::Command::new("mysql")
            .args(["-h127.0.0.1", &format!("-P{port}"), &format!("-u{user}")])
            .args(["--batch", "-pany"])
            .args(cert)
            .args(["commerce", "-e", "select current_user() is not null"])
            .output()
            .unwrap()
    };
    assert_eq!(
        stdout(&as_user("shardgate-test-client", &with_client)),
        "current_user() is not null\n1\n"
    );
    let out = as_user("someone-else", &with_client);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("ERROR 1045"), "{err}");
    assert!(!as_user("shardgate-test-client", &["--skip-ssl"])
        .status
        .success());

    // Half-given setups do not start.
    let refused = |args: &[&str], says: &str| {
        let mut all = vec!["serve", "--mysql-server-port", "0", "--port", "0"];
        all.extend_from_slice(args);
        let out = shardgate_cmd(&all);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(says),
            "{args:?}: {err}"
        );
    };
    let (pem, key) = (certs.path("server-1.pem"), certs.path("server-1.key"));
    refused(&["--mysql_server_ssl_cert", &pem], "go together");
    refused(
        &["--mysql_server_require_secure_transport"],
        "needs --mysql_server_ssl_cert",
    );
    refused(
        &[
            "--mysql_server_ssl_cert",
            &key,
            "--mysql_server_ssl_key",
            &key,
        ],
        "server-1.key",
    );
    refused(
        &[
            "--mysql_server_ssl_cert",
            &pem,
            "--mysql_server_ssl_key",
            &certs.path("client.key"),
        ],
        "TLS configuration",
    );
    refused(
        &[
            "--mysql_server_ssl_cert",
            &pem,
            "--mysql_server_ssl_key",
            &key,
            "--mysql_server_tls_min_version",
            "SSLv3",
        ],
        "SSLv3",
    );
    refused(
        &[
            "--mysql_server_ssl_cert",
            &pem,
            "--mysql_server_ssl_key",
            &key,
            "--mysql_auth_server_impl",
            "clientcert",
        ],
        "needs --mysql_server_ssl_ca",
    );
}

/// The static auth file is read again every
/// `--mysql_auth_static_reload_interval` and on SIGHUP: a password
/// changed in the file lets the new one in and keeps the old one out,
/// without a restart and without dropping a connected client; a file
/// that does not parse leaves the users as they were.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_auth_file_changes_reach_new_connections() {
    let dir = temp_dir("auth-reload");
    let file = dir.join("auth.json");
    let users = |pw: &str| format!(r#"{{"carol": [{{"Password": "{pw}"}}]}}"#);
    let carol = |port: u16, pw: &str| mysql_async::Conn::new(login(port, "carol", pw));
    for reload in ["interval", "sighup"] {
        std::fs::write(&file, users("first")).unwrap();
        let mut args = vec![
            "--mysql_auth_server_impl".to_string(),
            "static".into(),
            "--mysql_auth_server_static_file".into(),
            file.display().to_string(),
        ];
        if reload == "interval" {
            args.extend(["--mysql_auth_static_reload_interval".into(), "100ms".into()]);
        }
        let (port, web, pid) = spawn_shardgate_pid(&args).await;
        let mut before = carol(port, "first").await.unwrap();
        std::fs::write(&file, users("second")).unwrap();
        if reload == "sighup" {
            // Without the signal nothing is read again.
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            assert!(carol(port, "first").await.is_ok(), "{reload}");
            unsafe { libc::kill(pid, libc::SIGHUP) };
        }
        let changed = eventually(10, || async move {
            (debug_var_at(web, "AuthReloads").await == 1).then_some(())
        })
        .await;
        assert!(changed.is_some(), "{reload}: the file was not read again");
        let e = carol(port, "first").await.unwrap_err();
        assert_eq!(err_code(&e), Some(1045), "{reload}: {e}");
        let mut after = carol(port, "second").await.unwrap();
        assert_eq!(
            rows(&mut after, "select 1").await,
            vec![vec![Some("1".into())]]
        );
        assert_eq!(
            rows(&mut before, "select 2").await,
            vec![vec![Some("2".into())]]
        );
        // A broken file keeps the users that were read last.
        std::fs::write(&file, "{\"carol\": [").unwrap();
        if reload == "sighup" {
            unsafe { libc::kill(pid, libc::SIGHUP) };
        }
        tokio::time::sleep(std::time::Duration::from_millis(400)).await;
        assert!(carol(port, "second").await.is_ok(), "{reload}");
        assert_eq!(debug_var_at(web, "AuthReloads").await, 1, "{reload}");
    }
}

/// A vtgate command line as deployments write it (the operator's and
/// hand-written units' flags, in Go's syntax: one dash, `=true`, values
/// after a space or `=`) starts shardgate: the flags with nothing to act
/// on are named in the log by reason, the ones that shape serving take
/// effect (`--mysql_default_workload`, `--mysql_server_query_timeout`,
/// `--mysql_auth_server_static_string`, `--enable_buffer=true`,
/// `--no_scatter=false`, `--max_payload_size`, `--enable_direct_ddl=false`);
/// a misspelt flag still stops the start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vtgate_command_line_in_go_syntax_starts_shardgate() {
    let dir = temp_dir("vtgate-line");
    let line = format!(
        "-logtostderr -alsologtostderr=true -v 1 -stderrthreshold=0 -cell zone1 \
         -cells_to_watch zone1 -tablet_types_to_wait PRIMARY,REPLICA \
         -service_map grpc-vtgateservice -grpc_port 15999 -grpc_max_message_size 16777216 \
         -grpc_keepalive_time=10s -grpc_use_effective_callerid -mysql_auth_server_impl static \
         -mysql_auth_server_static_string {{\"dave\":[{{\"Password\":\"pw\"}}]}} \
         -mysql_default_workload olap -mysql_server_query_timeout 400ms \
         -gateway_initial_tablet_timeout 30s -healthcheck_timeout=2s -srv_topo_timeout 1s \
         -tablet_refresh_interval 1m -planner-version Gen4 -normalize_queries=true \
         -enable_buffer=true -buffer_window 10s -no_scatter=false -enable_system_settings \
         -tracer noop -emit_stats=false -legacy_replication_lag_algorithm \
         -max_payload_size 120 -enable_direct_ddl=false \
         -log_dir {}",
        dir.display()
    );
    let args: Vec<String> = line.split_whitespace().map(String::from).collect();
    let (port, _) = spawn_shardgate(&args).await;
    let mut conn = mysql_async::Conn::new(login(port, "dave", "pw"))
        .await
        .unwrap();
    assert_eq!(
        rows(&mut conn, "select @@workload").await,
        vec![vec![Some("OLAP".into())]]
    );
    let started = std::time::Instant::now();
    let e = conn.query_drop("select sleep(3)").await.unwrap_err();
    assert_eq!(err_code(&e), Some(1317), "{e}");
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
    // The session goes on; a scatter is allowed (no_scatter=false).
    assert_eq!(
        rows(&mut conn, "select 4").await,
        vec![vec![Some("4".into())]]
    );

    // --max_payload_size: longer statements are refused, text or
    // prepared, unless the directive lets them through.
    let long = format!("select '{}' as s", "y".repeat(150));
    for e in [
        conn.query_drop(&long).await.unwrap_err(),
        conn.prep(&long).await.unwrap_err(),
    ] {
        assert_eq!(err_code(&e), Some(1153), "{e}");
        assert!(
            e.to_string().contains("query payload size above threshold"),
            "{e}"
        );
    }
    let allowed = long.replacen("select", "select /*vt+ IGNORE_MAX_PAYLOAD_SIZE */", 1);
    assert_eq!(
        rows(&mut conn, &allowed).await,
        vec![vec![Some("y".repeat(150))]]
    );
    // --enable_direct_ddl=false: schema changes are refused at the gate.
    for ddl in [
        "create table no_ddl (id int primary key)",
        "truncate table no_ddl",
        "drop table if exists no_ddl",
    ] {
        let e = conn.query_drop(ddl).await.unwrap_err();
        assert_eq!(err_code(&e), Some(1105), "{ddl}: {e}");
        assert!(e.to_string().contains("direct DDL is disabled"), "{e}");
    }
    let e = conn
        .prep("alter table no_ddl add column c int")
        .await
        .unwrap_err();
    assert!(e.to_string().contains("direct DDL is disabled"), "{e}");
    let mut tablet = connect_tablet(100).await;
    let made: Vec<String> = tablet
        .query("select table_name from information_schema.tables where table_name = 'no_ddl'")
        .await
        .unwrap();
    assert!(made.is_empty(), "{made:?}");

    let log = std::fs::read_to_string(dir.join("shardgate.log")).unwrap();
    let said =
        |reason: &str, flags: &str| log.lines().any(|l| l.contains(reason) && l.contains(flags));
    assert!(
        said(
            "glog",
            "--logtostderr --alsologtostderr --v --stderrthreshold"
        ),
        "{log}"
    );
    assert!(said("gRPC", "--service_map --grpc_port --grpc_max_message_size --grpc_keepalive_time --grpc_use_effective_callerid"), "{log}");
    assert!(said("discovery", "--gateway_initial_tablet_timeout --healthcheck_timeout --srv_topo_timeout --tablet_refresh_interval"), "{log}");
    assert!(
        said("does not have", "--legacy_replication_lag_algorithm"),
        "{log}"
    );

    // A flag neither vtgate's list nor shardgate knows stops the start.
    let out = shardgate_cmd(&["serve", "-mysql_server_prot", "15306"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("--mysql_server_prot"),
        "{err}"
    );
    let out = shardgate_cmd(&["serve", "--mysql_default_workload", "batch"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("OLTP, OLAP, DBA"),
        "{err}"
    );
}

/// vtgate's `--proxy_protocol`: behind a real HAProxy that sends PROXY
/// headers (version 1 with `send-proxy`, version 2 with `send-proxy-v2`)
/// the `mysql` client is served; behind a relay that names another
/// client (as a balancer in front of remote clients would), the
/// access-denied message names that client's address, for both header
/// versions; a client that sends no header is served after the wait;
/// bytes that are not a header close the connection without a greeting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_protocol_headers_name_the_client() {
    let dir = temp_dir("proxyproto");
    let file = dir.join("auth.json");
    std::fs::write(&file, r#"{"alice": [{"Password": "pw"}]}"#).unwrap();
    let (port, _) = spawn_shardgate(&[
        "--mysql_auth_server_impl".into(),
        "static".into(),
        "--mysql_auth_server_static_file".into(),
        file.display().to_string(),
        "--proxy_protocol".into(),
    ])
    .await;

    let (v1, v2) = (free_port(), free_port());
    let cfg = dir.join("haproxy.cfg");
    std::fs::write(
        &cfg,
        format!(
            "global\n  maxconn 100\ndefaults\n  mode tcp\n  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\n\
             listen v1\n  bind 127.0.0.1:{v1}\n  server sg 127.0.0.1:{port} send-proxy\n\
             listen v2\n  bind 127.0.0.1:{v2}\n  server sg 127.0.0.1:{port} send-proxy-v2\n"
        ),
    )
    .unwrap();
    let mut haproxy = std::process::Command::new("haproxy")
        .args(["-f", &cfg.display().to_string(), "-db"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start haproxy");
    track_pid(haproxy.id() as i32);
    let cli = |at: u16, pw: &str| {
        std::process::Command::new("mysql")
            .args([
                "-h127.0.0.1",
                &format!("-P{at}"),
                "-ualice",
                &format!("-p{pw}"),
            ])
            .args(["--batch", "commerce", "-e", "select 1 + 1"])
            .output()
            .unwrap()
    };
    for at in [v1, v2] {
        let up = eventually(10, || async move {
            tokio::net::TcpStream::connect(("127.0.0.1", at))
                .await
                .ok()
                .map(|_| ())
        })
        .await;
        assert!(up.is_some(), "haproxy did not listen");
        assert_eq!(stdout(&cli(at, "pw")), "1 + 1\n2\n");
        let out = cli(at, "wrong");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("ERROR 1045") && err.contains("'alice'@'127.0.0.1'"),
            "{err}"
        );
    }

    // A balancer in front of remote clients: the header names them.
    let relay = |header: Vec<u8>| async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let at = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            let (mut client, _) = listener.accept().await.unwrap();
            let mut server = tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .unwrap();
            server.write_all(&header).await.unwrap();
            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
        });
        at
    };
    let mut v2_header = b"\r\n\r\n\0\r\nQUIT\n\x21\x21\x00\x24".to_vec();
    v2_header.extend([0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7]);
    v2_header.extend([0; 15]);
    v2_header.extend([1, 0x17, 0x70, 0x3b, 0xca]);
    for (header, client) in [
        (
            b"PROXY TCP4 203.0.113.7 127.0.0.1 5555 15306\r\n".to_vec(),
            "203.0.113.7",
        ),
        (v2_header, "2001:db8::7"),
    ] {
        let at = relay(header).await;
        let opts = mysql_async::OptsBuilder::default()
            .ip_or_hostname("127.0.0.1")
            .tcp_port(at)
            .user(Some("alice"))
            .pass(Some("nope"))
            .prefer_socket(false);
        let e = mysql_async::Conn::new(opts).await.unwrap_err();
        assert_eq!(err_code(&e), Some(1045), "{e}");
        assert!(
            e.to_string().contains(&format!("'alice'@'{client}'")),
            "{e}"
        );
    }

    // No header: served with the socket's address once the wait is over.
    let opts = mysql_async::OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(port)
        .user(Some("alice"))
        .pass(Some("pw"))
        .prefer_socket(false);
    let mut plain = mysql_async::Conn::new(opts).await.unwrap();
    assert_eq!(
        rows(&mut plain, "select 3").await,
        vec![vec![Some("3".into())]]
    );

    // Not a header: closed, never greeted.
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        s.write_all(b"GET / HTTP/1.0\r\n\r\n").await.unwrap();
        let mut got = Vec::new();
        let n = tokio::time::timeout(std::time::Duration::from_secs(5), s.read_to_end(&mut got))
            .await
            .expect("closed")
            .unwrap_or(0);
        assert_eq!(n, 0, "greeted: {got:?}");
    }
    let _ = haproxy.kill();
    let _ = haproxy.wait();
}

/// vtgate's `--mysql_server_read_timeout` and `--mysql_server_write_timeout`:
/// a client silent for longer than the read timeout is disconnected while
/// one that keeps talking stays; a client that stops taking a large
/// result's bytes is disconnected mid-result, where a gate without the
/// flag waits for it and delivers the whole result.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_clients_are_dropped_after_vtgates_connection_timeouts() {
    let (port, _) = spawn_shardgate(&[
        "--mysql_server_read_timeout=600ms".into(),
        "--mysql_server_write_timeout".into(),
        "600ms".into(),
    ])
    .await;
    let mut busy = connect_port(port, Some("commerce")).await;
    let mut idle = connect_port(port, Some("commerce")).await;
    for _ in 0..8 {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        assert_eq!(
            rows(&mut busy, "select 1").await,
            vec![vec![Some("1".into())]]
        );
    }
    assert!(
        idle.query_drop("select 1").await.is_err(),
        "idle client kept"
    );
    // A client silent in its handshake is dropped too.
    {
        use tokio::io::AsyncReadExt;
        let mut raw = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        let mut greeting = vec![0u8; 512];
        assert!(raw.read(&mut greeting).await.unwrap() > 0);
        let mut rest = Vec::new();
        let closed = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            raw.read_to_end(&mut rest),
        )
        .await;
        assert!(matches!(closed, Ok(Ok(0))), "{closed:?}");
    }

    // 20,000 rows of 1,000 bytes: more than the sockets buffer.
    let big = query("select repeat('x', 1000) from seq_1_to_20000");
    let drained = |port: u16| {
        let big = big.clone();
        async move {
            let mut raw = RawClient::connect(port, Some("commerce")).await;
            raw.write_packet(0, &big).await;
            tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
            let (mut rows, mut eofs) = (0, 0);
            while let Some((_, p)) = raw.read_packet().await {
                // The EOF after the definitions, then the one after the rows.
                if p.first() == Some(&0xFE) && p.len() < 9 {
                    eofs += 1;
                    if eofs == 2 {
                        return (rows, true);
                    }
                }
                rows += 1;
            }
            (rows, false)
        }
    };
    let (got, whole) = drained(port).await;
    assert!(
        !whole && got < 20_000,
        "stalled client got {got} packets, whole: {whole}"
    );
    let (plain, _) = spawn_shardgate(&[]).await;
    let (got, whole) = drained(plain).await;
    assert!(whole && got > 20_000, "{got}");
}

/// vtgate's lameduck period: after SIGTERM the listener closes at once,
/// pings fail with 1053 (so pools drop their connections) and
/// `/debug/health` answers 503, while a client already connected finishes
/// its transaction; when the period is over the process stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_connected_clients_for_the_lameduck_period() {
    let (port, web, pid) = spawn_shardgate_pid(&["--lameduck-period".into(), "3s".into()]).await;
    let mut conn = connect_port(port, Some("commerce")).await;
    conn.query_drop("create table if not exists lameduck_t (id int primary key)")
        .await
        .unwrap();
    conn.query_drop("delete from lameduck_t").await.unwrap();
    conn.query_drop("begin").await.unwrap();
    conn.query_drop("insert into lameduck_t values (7)")
        .await
        .unwrap();
    assert!(http_get(web, "/debug/health").await.contains("200 OK"));
    let stopped_at = std::time::Instant::now();
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let draining = eventually(5, || async move {
        http_get(web, "/debug/health")
            .await
            .contains("503")
            .then_some(())
    })
    .await;
    assert!(draining.is_some(), "health did not turn 503");
    // The health answer turns first; the accept loop lets go of the
    // listener as it sees the signal, well inside the period.
    let closed = eventually(2, || async move {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
            .then_some(())
    })
    .await;
    assert!(closed.is_some(), "the listener still takes clients");
    let e = conn.ping().await.unwrap_err();
    assert_eq!(err_code(&e), Some(1053), "{e}");
    conn.query_drop("commit").await.unwrap();
    let mut tablet = connect_tablet(100).await;
    let kept: Vec<u32> = tablet
        .query("select id from vt_commerce.lameduck_t")
        .await
        .unwrap();
    assert_eq!(kept, vec![7]);
    let gone = eventually(10, || async move {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        (stat.is_empty() || stat.contains(") Z")).then_some(())
    })
    .await;
    assert!(gone.is_some(), "still running after the lameduck period");
    assert!(stopped_at.elapsed() >= std::time::Duration::from_secs(3));
}

/// vtgate's query log options: `--querylog-format=json` writes one JSON
/// object per statement under vtgate's keys, `--querylog-row-threshold`
/// keeps only statements that returned or changed that many rows (text,
/// prepared, reads and writes), and `--querylog-mode=error` only those
/// that failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_log_options_choose_the_form_and_the_statements() {
    let dir = temp_dir("querylog-opts");
    let json_log = dir.join("json.log");
    let (port, _) = spawn_shardgate(&[
        "--log_queries_to_file".into(),
        json_log.display().to_string(),
        "--querylog-format=json".into(),
        "--querylog-row-threshold".into(),
        "3".into(),
    ])
    .await;
    let mut conn = connect_port(port, Some("commerce")).await;
    conn.query_drop("create table if not exists qlog_t (id int primary key)")
        .await
        .unwrap();
    conn.query_drop("delete from qlog_t").await.unwrap();
    let five: Vec<u64> = conn
        .query("select seq from seq_1_to_5 /* five */")
        .await
        .unwrap();
    assert_eq!(five.len(), 5);
    let two: Vec<u64> = conn
        .query("select seq from seq_1_to_2 /* two */")
        .await
        .unwrap();
    assert_eq!(two.len(), 2);
    let four: Vec<u64> = conn
        .exec(
            "select seq from seq_1_to_10 where seq <= ? /* four */",
            (4,),
        )
        .await
        .unwrap();
    assert_eq!(four.len(), 4);
    conn.exec_drop("insert into qlog_t values (?), (?), (?)", (1, 2, 3))
        .await
        .unwrap();
    conn.query_drop("insert into qlog_t values (4)")
        .await
        .unwrap();
    let lines = eventually(10, || {
        let path = json_log.clone();
        async move {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            (text.lines().count() >= 3).then_some(text)
        }
    })
    .await
    .expect("three lines");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let text = std::fs::read_to_string(&json_log).unwrap();
    let logged: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let sqls: Vec<&str> = logged.iter().map(|v| v["SQL"].as_str().unwrap()).collect();
    assert_eq!(sqls.len(), 3, "{lines}");
    assert!(sqls[0].contains("/* five */"), "{sqls:?}");
    assert!(sqls[1].contains("/* four */"), "{sqls:?}");
    assert_eq!(sqls[2], "insert into qlog_t values (?), (?), (?)");
    assert_eq!(logged[2]["RowsAffected"], 3);
    assert_eq!(logged[2]["StmtType"], "INSERT");
    assert_eq!(
        logged[2]["BindVars"]["v3"],
        serde_json::json!({"type": "INT64", "value": 3})
    );
    assert_eq!(logged[1]["Method"], "Execute");

    let err_log = dir.join("errors.log");
    let (port, _) = spawn_shardgate(&[
        "--log_queries_to_file".into(),
        err_log.display().to_string(),
        "--querylog-mode".into(),
        "error".into(),
    ])
    .await;
    let mut conn = connect_port(port, Some("commerce")).await;
    conn.query_drop("select 1").await.unwrap();
    assert!(conn.query_drop("select nope from qlog_t").await.is_err());
    conn.query_drop("select 2").await.unwrap();
    let text = eventually(10, || {
        let path = err_log.clone();
        async move {
            std::fs::read_to_string(&path)
                .ok()
                .filter(|t| !t.is_empty())
        }
    })
    .await
    .expect("a line");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let text = std::fs::read_to_string(&err_log).unwrap_or(text);
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(
        text.contains("select nope from qlog_t") && text.contains("Unknown column"),
        "{text}"
    );
}

/// vtgate's `--keyspaces_to_watch` and `--allowed_tablet_types`: a gate
/// scoped to commerce's primary and rdonly tablets knows no other
/// keyspace (1049, and `SHOW KEYSPACES` lists only commerce), keeps no
/// replica (a replica read finds no tablet) and serves the rest; with
/// `--tablet_filters` a gate keeps the tablets of one key range only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gate_serves_only_the_keyspaces_and_tablet_types_it_watches() {
    let (port, web) = spawn_shardgate(&[
        "--keyspaces_to_watch".into(),
        "commerce".into(),
        "--allowed_tablet_types=PRIMARY,RDONLY".into(),
    ])
    .await;
    let mut conn = connect_port(port, None).await;
    assert_eq!(
        rows(&mut conn, "show keyspaces").await,
        vec![vec![Some("commerce".into())]]
    );
    let e = conn.query_drop("use customer").await.unwrap_err();
    assert_eq!(err_code(&e), Some(1049), "{e}");
    assert!(try_connect_port(port, Some("customer")).await.is_err());
    conn.query_drop("use commerce").await.unwrap();
    let at: Option<u16> = conn.query_first("select @@port").await.unwrap();
    assert_eq!(at, Some(tablet_port(100)));
    conn.query_drop("use `commerce@rdonly`").await.unwrap();
    let at: Option<u16> = conn.query_first("select @@port").await.unwrap();
    assert_eq!(at, Some(tablet_port(102)));
    conn.query_drop("use `commerce@replica`").await.unwrap();
    let e = conn.query_drop("select @@port").await.unwrap_err();
    assert!(e.to_string().contains("replica"), "{e}");
    assert_eq!(debug_var_at(web, "Tablets").await, 2);

    // --tablet_filters: a gate for customer's first half (by key range).
    let (port, web) = spawn_shardgate(&["--tablet_filters=customer|-80".into()]).await;
    let mut conn = connect_port(port, Some("customer:-80")).await;
    let at: Option<u16> = conn.query_first("select @@port").await.unwrap();
    assert_eq!(at, Some(tablet_port(300)));
    conn.query_drop("use `customer:80-`").await.unwrap();
    let e = conn.query_drop("select @@port").await.unwrap_err();
    assert!(e.to_string().contains("80-"), "{e}");
    conn.query_drop("use commerce").await.unwrap();
    assert!(conn.query_drop("select @@port").await.is_err());
    assert_eq!(debug_var_at(web, "Tablets").await, 2);
}

/// `mysqladmin` against the gate: `ping` is COM_PING, `status` is
/// COM_STATISTICS (which vtgate does not answer), told in MariaDB's words
/// with the gate's own uptime, logged-in clients and commands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysqladmin_status_is_answered_by_the_gate() {
    let c = cluster();
    let mut held = connect(Some("commerce")).await;
    held.query_drop("select 1").await.unwrap();
    let admin = |cmd: &str| {
        let out = std::process::Command::new("mysqladmin")
            .args(["-h127.0.0.1", &format!("-P{}", c.port), "-uapp", cmd])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(admin("ping").contains("mysqld is alive"));
    let status = admin("status");
    let figure = |name: &str| -> u64 {
        let at = status.find(name).unwrap_or_else(|| panic!("{status}")) + name.len();
        status[at..]
            .split_whitespace()
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{status}"))
    };
    assert!(status.starts_with("Uptime: "), "{status}");
    // This test's connection and mysqladmin's own, at least.
    assert!(figure("Threads: ") >= 2, "{status}");
    assert!(figure("Questions: ") >= 1, "{status}");
}
