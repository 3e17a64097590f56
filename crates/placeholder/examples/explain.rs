//! Shows how env values are read: `cargo run -p akv-placeholder --example explain -- VALUE...`
//! (with no arguments it explains a few typical values).

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let values = if args.is_empty() {
        [
            "postgres://app@db:5432/app",
            "db-password@azurekeyvault",
            "tls@azurekeyvault?type=certificate&part=cert&vault=https://kv1.vault.azure.cn",
            "app-config@azurekeyvault?key=apiToken",
            "tls@azurekeyvault?tls.crt",
            "db_password@azurekeyvault",
            "db@azurekeyvault?vualt=kv1",
        ]
        .map(String::from)
        .to_vec()
    } else {
        args
    };
    for value in values {
        match akv_placeholder::parse(&value) {
            Ok(None) => println!("{value:?}\n    left alone: not a placeholder"),
            Ok(Some(r)) => {
                let vault = r
                    .vault
                    .as_ref()
                    .map_or("(default vault)".into(), |v| v.url());
                println!(
                    "{value:?}\n    {} {:?} in {vault}, version {}, canonical: {r}",
                    r.kind,
                    r.name,
                    r.version.as_deref().unwrap_or("latest"),
                );
            }
            Err(e) => println!("{value:?}\n    refused: {e}"),
        }
    }
}
