//! Pod (or pod template) to outcome: plan -> image lookups -> patch, the one path admission and
//! `inject -f` share, so the offline CLI cannot drift from what the cluster does.

use std::future::Future;

use akv_mutation::{Entrypoints, Mutation, Plan, Skip};

use crate::lookup::{EntrypointSource, LookupRequest};

/// What the mutation of one pod came to.
#[derive(Debug)]
pub enum Outcome {
    /// Wrapped containers: apply `Mutation::patch`.
    Mutated(Mutation),
    /// Left exactly as it is, with the warnings the plan still has for its author.
    Skipped(Skip, Vec<String>),
}

/// Looks up the images `plan` needs (after `before_lookups` allows it: admission checks the
/// namespace is selected before reading its pull Secrets) and builds the patch.
/// Err is the refusal, in words for the pod's author.
pub async fn mutate<G, F>(
    plan: &Plan<'_>,
    namespace: &str,
    source: &dyn EntrypointSource,
    before_lookups: G,
) -> Result<Outcome, String>
where
    G: FnOnce() -> F,
    F: Future<Output = Result<(), String>>,
{
    let lookups = plan.images_to_look_up();
    let entrypoints = if lookups.is_empty() {
        Entrypoints::new()
    } else {
        before_lookups().await?;
        let request = LookupRequest {
            namespace,
            images: &lookups,
            arch: plan.arch(),
            pull_secrets: plan.image_pull_secrets(),
            service_account: plan.service_account(),
        };
        source.entrypoints(request).await
    };
    let mutation = plan
        .patch(&entrypoints)
        .map_err(|denial| denial.to_string())?;
    Ok(match plan.skipped() {
        Some(skip) => Outcome::Skipped(skip, mutation.warnings),
        None => Outcome::Mutated(mutation),
    })
}
