//! `weir healthcheck URL`: a plain HTTP/1.1 GET that exits 0 on a 2xx answer, for container
//! images that have no curl (the Dockerfile's HEALTHCHECK points it at the admin `/healthz`).

use anyhow::Context as _;

pub fn healthcheck(
    url: &str,
    headers: &[String],
    timeout: std::time::Duration,
) -> anyhow::Result<()> {
    let uri: http::Uri = url.parse().with_context(|| format!("{url} is not a URL"))?;
    anyhow::ensure!(
        uri.scheme_str() == Some("http"),
        "{url}: only http:// URLs are checked (point it at a plaintext or admin listener)"
    );
    let authority = uri
        .authority()
        .with_context(|| format!("{url} has no host"))?
        .clone();
    let target = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
    let mut head = format!("GET {target} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\nUser-Agent: weir-healthcheck\r\n");
    for h in headers {
        anyhow::ensure!(
            h.contains(':') && !h.contains('\r') && !h.contains('\n'),
            "header {h:?} is not `Name: value`"
        );
        head.push_str(h);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    let addr = format!(
        "{}:{}",
        authority.host(),
        authority.port_u16().unwrap_or(80)
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let status_line = runtime.block_on(async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        tokio::time::timeout(timeout, async {
            let mut stream = tokio::net::TcpStream::connect(&addr).await?;
            stream.write_all(head.as_bytes()).await?;
            let mut got = Vec::new();
            let mut buf = [0u8; 512];
            while !got.contains(&b'\n') && got.len() < 4096 {
                let n = stream.read(&mut buf).await?;
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
            }
            Ok::<_, std::io::Error>(got)
        })
        .await
    });
    let got = match status_line {
        Ok(Ok(got)) => got,
        Ok(Err(e)) => anyhow::bail!("{url}: {e}"),
        Err(_) => anyhow::bail!("{url}: no answer within {}s", timeout.as_secs()),
    };
    let line = String::from_utf8_lossy(got.split(|&b| b == b'\n').next().unwrap_or_default());
    let status = line
        .strip_prefix("HTTP/1.")
        .and_then(|rest| rest.get(2..5))
        .and_then(|code| code.parse::<u16>().ok())
        .with_context(|| format!("{url}: not an HTTP answer: {:?}", line.trim_end()))?;
    anyhow::ensure!((200..300).contains(&status), "{url}: answered {status}");
    println!("{url}: {status}");
    Ok(())
}
