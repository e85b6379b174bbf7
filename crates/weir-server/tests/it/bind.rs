//! Listener addresses as Caddy and Traefik users write them: `localhost:PORT` answers on
//! `127.0.0.1` and `[::1]`, `:PORT` on every interface in both families, and an IPv4 client of
//! a dual-stack `[::]:PORT` is seen (logged, matched by IP rules) as its IPv4 address, never as
//! `::ffff:a.b.c.d`.

use std::net::SocketAddr;

use crate::common::*;

fn config(bind: &str) -> String {
    format!(
        r#"
[[listeners]]
name = "main"
bind = "{bind}"

[[routes]]
respond = {{ status = 200, body = "hi" }}
"#
    )
}

async fn get(addr: SocketAddr) -> String {
    weir_testkit::raw(
        addr,
        b"GET / HTTP/1.1\r\nhost: bind.test\r\nconnection: close\r\n\r\n",
    )
    .await
}

#[tokio::test]
async fn shorthands_listen_on_ipv4_and_ipv6_and_clients_are_seen_as_themselves() {
    let v4: std::net::IpAddr = [127, 0, 0, 1].into();
    let v6: std::net::IpAddr = std::net::Ipv6Addr::LOCALHOST.into();
    for (bind, families) in [
        ("localhost:0", vec![v4, v6]),
        (":0", vec![v4, v6]),
        ("[::]:0", vec![v4, v6]),
        ("127.0.0.1:0", vec![v4]),
    ] {
        let gw = gateway(&config(bind)).await;
        let port = gw.addr.port();
        for ip in &families {
            let answer = get(SocketAddr::new(*ip, port)).await;
            assert!(
                answer.starts_with("HTTP/1.1 200"),
                "{bind} via {ip}: {answer}"
            );
        }
        let lines = gw.log_lines_at_least(families.len()).await;
        let clients: Vec<&str> = lines
            .iter()
            .filter_map(|l| l["client_ip"].as_str())
            .collect();
        let want: Vec<String> = families.iter().map(ToString::to_string).collect();
        assert_eq!(clients, want, "{bind}");
        if families.len() == 1 {
            assert!(
                tokio::net::TcpStream::connect(SocketAddr::new(v6, port))
                    .await
                    .is_err(),
                "{bind} does not answer on [::1]"
            );
        }
    }
}
