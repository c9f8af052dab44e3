//! Configuration from the environment (API.md §7), read once per process.

use std::net::IpAddr;

/// What every binary reads from its environment.
#[derive(Clone, Debug)]
pub struct Config {
    pub table_name: String,
    pub bucket_name: String,
    /// The secret that signs tokens (`JWT_SECRET`, or the `AWSCURRENT` value of the secret
    /// `JWT_SECRET_ARN` names, read at init by [`Config::load_secrets`]).
    pub jwt_secret: String,
    /// The secret before it, whose tokens still verify (`JWT_SECRET_PREVIOUS`, or that
    /// secret's `AWSPREVIOUS` value).
    pub jwt_previous_secret: Option<String>,
    /// `JWT_SECRET_ARN`: a Secrets Manager secret to read the secrets from at init.
    pub jwt_secret_arn: Option<String>,
    /// `EGRESS_ALLOWED_NETWORKS` (or its older name `DATASOURCE_ALLOWED_NETWORKS`): IPs or
    /// CIDRs that URL data sources and notification channels may reach although private.
    pub allowed_networks: Vec<(IpAddr, u8)>,
    /// `DELIVERY_BACKOFF_SECONDS`: the waits before a delivery's second, third... attempt.
    pub delivery_backoff: Vec<u64>,
    /// `MAIL_FROM`: the address emails are sent from (the SES identity).
    pub mail_from: String,
    /// `SES_CONFIGURATION_SET`: the SES configuration set emails are sent with, if any.
    pub ses_configuration_set: Option<String>,
    pub port: u16,
}

impl Config {
    pub fn from_env() -> Result<Self, String> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let jwt_secret_arn = var("JWT_SECRET_ARN");
        let jwt_secret = match var("JWT_SECRET") {
            Some(s) if s.len() >= 16 => s,
            Some(_) => return Err("JWT_SECRET must be at least 16 characters".into()),
            // Read from Secrets Manager by load_secrets before the state is built.
            None if jwt_secret_arn.is_some() => String::new(),
            None => {
                tracing::warn!("JWT_SECRET is not set; using an insecure development secret");
                "pulseboard-insecure-development-secret".into()
            }
        };
        let port = match var("PORT") {
            Some(p) => p
                .parse()
                .map_err(|_| format!("PORT is not a port number: {p}"))?,
            None => 3000,
        };
        let allowed_networks =
            match var("EGRESS_ALLOWED_NETWORKS").or_else(|| var("DATASOURCE_ALLOWED_NETWORKS")) {
                Some(list) => parse_networks(&list)?,
                None => Vec::new(),
            };
        let delivery_backoff = match var("DELIVERY_BACKOFF_SECONDS") {
            Some(text) => domain::notify::parse_backoff(&text)?,
            None => domain::notify::DEFAULT_BACKOFF.to_vec(),
        };
        Ok(Config {
            table_name: var("TABLE_NAME").unwrap_or_else(|| "pulseboard".into()),
            bucket_name: var("BUCKET_NAME").unwrap_or_else(|| "pulseboard".into()),
            jwt_secret,
            jwt_previous_secret: var("JWT_SECRET_PREVIOUS"),
            jwt_secret_arn,
            allowed_networks,
            delivery_backoff,
            mail_from: var("MAIL_FROM").unwrap_or_else(|| "reports@pulseboard.local".into()),
            ses_configuration_set: var("SES_CONFIGURATION_SET"),
            port,
        })
    }
}

impl Config {
    /// With `JWT_SECRET_ARN` set, reads the signing secret (`AWSCURRENT`) and the one before
    /// it (`AWSPREVIOUS`, absent before the first rotation) from Secrets Manager, once per
    /// process (a Lambda's init). The secret's value is the secret string itself. `sdk` is
    /// the store's configuration ([`crate::store::sdk_config`]): one HTTPS client, loaded once.
    pub async fn load_secrets(&mut self, sdk: &aws_config::SdkConfig) -> Result<(), String> {
        let Some(arn) = self.jwt_secret_arn.clone() else {
            return Ok(());
        };
        let client = aws_sdk_secretsmanager::Client::new(sdk);
        let read = |stage: &'static str| {
            let client = client.clone();
            let arn = arn.clone();
            async move {
                match client
                    .get_secret_value()
                    .secret_id(&arn)
                    .version_stage(stage)
                    .send()
                    .await
                {
                    Ok(out) => Ok(out.secret_string),
                    Err(e)
                        if stage == "AWSPREVIOUS"
                            && e.as_service_error()
                                .is_some_and(|s| s.is_resource_not_found_exception()) =>
                    {
                        Ok(None)
                    }
                    Err(e) => Err(format!(
                        "reading the JWT secret ({stage}) from Secrets Manager: {}",
                        crate::store::short_error(&e)
                    )),
                }
            }
        };
        let (current, previous) = tokio::try_join!(read("AWSCURRENT"), read("AWSPREVIOUS"))?;
        match current {
            Some(secret) if secret.len() >= 16 => self.jwt_secret = secret,
            _ => {
                return Err(
                    "the JWT secret in Secrets Manager is shorter than 16 characters".into(),
                )
            }
        }
        self.jwt_previous_secret = previous.filter(|p| p.len() >= 16);
        Ok(())
    }
}

/// Parses `10.0.0.0/8, 127.0.0.1` into (network, prefix length) pairs.
pub fn parse_networks(list: &str) -> Result<Vec<(IpAddr, u8)>, String> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|entry| {
            let (ip, len) = match entry.split_once('/') {
                Some((ip, len)) => (ip, Some(len)),
                None => (entry, None),
            };
            let ip: IpAddr = ip
                .parse()
                .map_err(|_| format!("EGRESS_ALLOWED_NETWORKS: '{entry}' is not an IP or CIDR"))?;
            let max = if ip.is_ipv4() { 32 } else { 128 };
            let len =
                match len {
                    Some(l) => l.parse::<u8>().ok().filter(|l| *l <= max).ok_or_else(|| {
                        format!("EGRESS_ALLOWED_NETWORKS: bad prefix in '{entry}'")
                    })?,
                    None => max,
                };
            Ok((ip, len))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_parse_and_reject() {
        let n = parse_networks("127.0.0.1, 10.0.0.0/8").unwrap();
        assert_eq!(n.len(), 2);
        assert_eq!(n[0].1, 32);
        assert_eq!(n[1].1, 8);
        assert!(parse_networks("10.0.0.0/33").is_err());
        assert!(parse_networks("nope").is_err());
    }
}
