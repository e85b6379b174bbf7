//! `otlp-sink ADDR`: an OTLP/gRPC trace collector that counts spans and prints the count every
//! ten seconds, for `bench/compare.sh --suite observe`.

use weir_testkit::otlp::Collector;

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:4317".to_owned());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    let collector = Collector::counting();
    let counter = collector.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(std::time::Duration::from_secs(10)).await;
            eprintln!("otlp-sink: {} spans", counter.count());
        }
    });
    collector.serve(listener).await;
    Ok(())
}
