//! Azure Container Registry through the webhook's own Microsoft Entra identity.
//!
//! `akv-registry` exchanges an Entra access token for an ACR refresh token; this module supplies
//! that access token from workload identity or managed identity (never from the pods). The SDK
//! gets our own HTTPS client (webpki roots, optional extra CA), so no system CA store is needed.

use std::path::PathBuf;
use std::sync::Arc;

use akv_registry::{AcrAuth, AcrTokenSource, BoxError, TokenFuture};
use azure_core::cloud::{CloudConfiguration, CustomConfiguration};
use azure_core::credentials::TokenCredential;
use azure_core::http::{ClientOptions, Transport};
use azure_identity::{
    ClientAssertionCredentialOptions, ManagedIdentityCredential, ManagedIdentityCredentialOptions,
    UserAssignedId, WorkloadIdentityCredential, WorkloadIdentityCredentialOptions,
};
use clap::ValueEnum;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

/// Which identity the webhook uses for ACR.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AcrIdentity {
    /// Workload identity when `AZURE_FEDERATED_TOKEN_FILE` is set, else no ACR credentials.
    Auto,
    WorkloadIdentity,
    ManagedIdentity,
    Off,
}

/// The identity settings, from flags and the `AZURE_*` variables the azure-workload-identity
/// webhook injects.
#[derive(Debug, Clone)]
pub struct AcrSettings {
    pub identity: AcrIdentity,
    pub client_id: Option<String>,
    pub tenant_id: Option<String>,
    pub federated_token_file: Option<PathBuf>,
    pub authority_host: Option<String>,
    /// Entra scope of the token exchanged at ACR.
    pub scope: String,
    /// Registry hosts besides `*.azurecr.io/.cn/.us` that take ACR's token exchange.
    pub extra_hosts: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum AcrError {
    #[error("--acr-identity workload-identity needs {0} (flag or env)")]
    Missing(&'static str),
    #[error("cannot create the {mode} credential for ACR: {reason}")]
    Credential { mode: &'static str, reason: String },
    #[error("the extra CA for ACR/Entra is not usable: {0}")]
    Ca(String),
    #[error("cannot build the HTTPS client for ACR/Entra: {0}")]
    Client(String),
    #[error("proxy for Entra ID: {0}")]
    Proxy(#[from] akv_proxy::ProxyError),
}

/// The proxy for Entra ID: `HTTPS_PROXY` / `NO_PROXY` of the webhook's environment (which the
/// operator sets). The managed identity endpoint (IMDS, plain HTTP) is never proxied.
pub fn proxy_from_env() -> Result<Option<Arc<akv_proxy::ProxySettings>>, AcrError> {
    Ok(akv_proxy::ProxySettings::from_vars(
        &akv_proxy::ProxyVars::from_process_env(),
        akv_proxy::PlainHttp::Direct,
    )?
    .map(Arc::new))
}

/// The HTTPS client handed to the SDK: webpki roots plus `extra_ca_pem`, ring, and exactly the
/// `proxy` given (reqwest does not read the environment itself).
pub fn http_client(
    extra_ca_pem: Option<&[u8]>,
    proxy: Option<&Arc<akv_proxy::ProxySettings>>,
) -> Result<reqwest::ClientBuilder, AcrError> {
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(pem) = extra_ca_pem {
        let mut added = 0;
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|e| AcrError::Ca(e.to_string()))?;
            roots.add(cert).map_err(|e| AcrError::Ca(e.to_string()))?;
            added += 1;
        }
        if added == 0 {
            return Err(AcrError::Ca("no PEM certificate in it".to_owned()));
        }
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| AcrError::Client(e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(akv_proxy::apply(
        reqwest::Client::builder().tls_backend_preconfigured(tls),
        proxy,
    ))
}

/// ACR settings for the registry resolver, or `None` when no identity is configured.
pub fn acr_auth(
    settings: &AcrSettings,
    http: reqwest::Client,
) -> Result<Option<AcrAuth>, AcrError> {
    let identity = match settings.identity {
        AcrIdentity::Off => return Ok(None),
        AcrIdentity::Auto if settings.federated_token_file.is_some() => {
            AcrIdentity::WorkloadIdentity
        }
        AcrIdentity::Auto => return Ok(None),
        other => other,
    };
    let options = ClientOptions {
        transport: Some(Transport::new(Arc::new(http))),
        cloud: settings.authority_host.as_ref().map(|host| {
            let mut custom = CustomConfiguration::default();
            custom.authority_host = host.clone();
            Arc::new(CloudConfiguration::Custom(custom))
        }),
        ..Default::default()
    };
    let credential: Arc<dyn TokenCredential> = match identity {
        AcrIdentity::WorkloadIdentity => {
            let token_file_path = settings.federated_token_file.clone();
            if token_file_path.is_none() {
                return Err(AcrError::Missing("AZURE_FEDERATED_TOKEN_FILE"));
            }
            let client_id = settings
                .client_id
                .clone()
                .ok_or(AcrError::Missing("AZURE_CLIENT_ID"))?;
            let tenant_id = settings
                .tenant_id
                .clone()
                .ok_or(AcrError::Missing("AZURE_TENANT_ID"))?;
            WorkloadIdentityCredential::new(Some(WorkloadIdentityCredentialOptions {
                credential_options: ClientAssertionCredentialOptions {
                    client_options: options,
                },
                client_id: Some(client_id),
                tenant_id: Some(tenant_id),
                token_file_path,
            }))
            .map_err(|e| AcrError::Credential {
                mode: "workload identity",
                reason: e.to_string(),
            })?
        }
        _ => ManagedIdentityCredential::new(Some(ManagedIdentityCredentialOptions {
            user_assigned_id: settings.client_id.clone().map(UserAssignedId::ClientId),
            client_options: options,
        }))
        .map_err(|e| AcrError::Credential {
            mode: "managed identity",
            reason: e.to_string(),
        })?,
    };
    let mut auth = AcrAuth::new(Arc::new(EntraTokens {
        credential,
        scope: settings.scope.clone(),
    }));
    auth.extra_hosts = settings.extra_hosts.clone();
    Ok(Some(auth))
}

/// Entra access tokens for ACR; the SDK credential caches and refreshes them.
#[derive(Debug)]
pub struct EntraTokens {
    credential: Arc<dyn TokenCredential>,
    scope: String,
}

impl AcrTokenSource for EntraTokens {
    fn access_token<'a>(&'a self, _registry: &'a str) -> TokenFuture<'a> {
        Box::pin(async move {
            let token = self
                .credential
                .get_token(&[self.scope.as_str()], None)
                .await
                .map_err(|e| Box::new(e) as BoxError)?;
            Ok(token.token.secret().to_owned())
        })
    }
}
