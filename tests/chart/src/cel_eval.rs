//! Evaluates the chart's admission CEL (a ValidatingAdmissionPolicy's `variables` and
//! `validations`, a webhook's `matchConditions`) with the `cel` crate, binding `object`,
//! `request` and `variables` the way the API server does.

use std::collections::HashMap;
use std::sync::Arc;

use cel::{Context, Env, Program, Value};
use serde_json::Value as Json;

#[derive(Debug, thiserror::Error)]
pub enum CelError {
    #[error("{what}: missing or not a string")]
    Missing { what: String },
    #[error("{what}: CEL does not compile: {message}")]
    Compile { what: String, message: String },
    #[error("{what}: CEL evaluation failed: {message}")]
    Evaluate { what: String, message: String },
    #[error("{what}: expected a {expected}, got {got:?}")]
    Type {
        what: String,
        expected: &'static str,
        got: String,
    },
}

/// Kubernetes' CEL environment as far as the chart uses it: the standard library and the
/// strings extension (`split`, `join`, `indexOf`, ...).
fn kubernetes_env() -> Arc<Env> {
    let mut env = Env::stdlib();
    env.add_extension(cel::extensions::strings)
        .expect("the strings extension registers once on a fresh environment");
    Arc::new(env)
}

fn compile(env: &Env, what: &str, source: &str) -> Result<Program, CelError> {
    env.compile(source).map_err(|e| CelError::Compile {
        what: what.to_owned(),
        message: e.to_string(),
    })
}

fn string_at<'a>(doc: &'a Json, pointer: &str, what: &str) -> Result<&'a str, CelError> {
    doc.pointer(pointer)
        .and_then(Json::as_str)
        .ok_or_else(|| CelError::Missing {
            what: format!("{what} {pointer}"),
        })
}

fn to_cel(json: &Json) -> Value {
    cel::to_value(json).expect("JSON always converts to CEL values")
}

/// What a policy decided about one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allowed,
    /// Denied, with the message the user would see.
    Denied(String),
}

struct Validation {
    name: String,
    expression: Program,
    message_expression: Option<Program>,
    message: Option<String>,
}

/// A compiled ValidatingAdmissionPolicy.
pub struct Policy {
    env: Arc<Env>,
    variables: Vec<(String, Program)>,
    validations: Vec<Validation>,
}

impl Policy {
    /// Compiles every expression of a rendered `ValidatingAdmissionPolicy` document.
    pub fn from_manifest(policy: &Json) -> Result<Policy, CelError> {
        let env = kubernetes_env();
        let mut variables = Vec::new();
        for (i, variable) in policy
            .pointer("/spec/variables")
            .and_then(Json::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            let what = format!("spec.variables[{i}]");
            let name = string_at(variable, "/name", &what)?;
            let source = string_at(variable, "/expression", &what)?;
            variables.push((
                name.to_owned(),
                compile(&env, &format!("variable {name}"), source)?,
            ));
        }
        let mut validations = Vec::new();
        let list = policy
            .pointer("/spec/validations")
            .and_then(Json::as_array)
            .ok_or_else(|| CelError::Missing {
                what: "spec.validations".into(),
            })?;
        for (i, validation) in list.iter().enumerate() {
            let name = format!("spec.validations[{i}]");
            let expression = compile(&env, &name, string_at(validation, "/expression", &name)?)?;
            let message_expression = match validation
                .get("messageExpression")
                .and_then(Json::as_str)
            {
                Some(source) => Some(compile(&env, &format!("{name}.messageExpression"), source)?),
                None => None,
            };
            let message = validation
                .get("message")
                .and_then(Json::as_str)
                .map(str::to_owned);
            validations.push(Validation {
                name,
                expression,
                message_expression,
                message,
            });
        }
        Ok(Policy {
            env,
            variables,
            validations,
        })
    }

    /// Evaluates the policy for the creation of `object` in `namespace`.
    pub fn evaluate(&self, object: &Json, namespace: &str) -> Result<Decision, CelError> {
        let request =
            serde_json::json!({"namespace": namespace, "operation": "CREATE", "subResource": ""});
        self.evaluate_request(object, &request)
    }

    /// As [`Policy::evaluate`], with the request's fields given (`namespace`, `operation`,
    /// `subResource`: the API server always sets the last, empty for the main resource).
    pub fn evaluate_request(&self, object: &Json, request: &Json) -> Result<Decision, CelError> {
        let mut context = Context::with_env(self.env.clone());
        context.add_variable_from_value("object", to_cel(object));
        context.add_variable_from_value("request", to_cel(request));
        // Variables are evaluated in order; each sees the ones before it, as in Kubernetes.
        let mut bound: HashMap<String, Value> = HashMap::new();
        for (name, program) in &self.variables {
            context.add_variable_from_value("variables", Value::Map(bound.clone().into()));
            let value = program.execute(&context).map_err(|e| CelError::Evaluate {
                what: format!("variable {name}"),
                message: e.to_string(),
            })?;
            bound.insert(name.clone(), value);
        }
        context.add_variable_from_value("variables", Value::Map(bound.into()));
        for validation in &self.validations {
            let passed = match validation.expression.execute(&context) {
                Ok(Value::Bool(b)) => b,
                Ok(other) => {
                    return Err(CelError::Type {
                        what: validation.name.clone(),
                        expected: "bool",
                        got: format!("{other:?}"),
                    });
                }
                Err(e) => {
                    return Err(CelError::Evaluate {
                        what: validation.name.clone(),
                        message: e.to_string(),
                    });
                }
            };
            if passed {
                continue;
            }
            let message = match &validation.message_expression {
                Some(program) => match program.execute(&context) {
                    Ok(Value::String(s)) => s.to_string(),
                    Ok(other) => {
                        return Err(CelError::Type {
                            what: format!("{}.messageExpression", validation.name),
                            expected: "string",
                            got: format!("{other:?}"),
                        });
                    }
                    Err(e) => {
                        return Err(CelError::Evaluate {
                            what: format!("{}.messageExpression", validation.name),
                            message: e.to_string(),
                        });
                    }
                },
                None => validation.message.clone().unwrap_or_default(),
            };
            return Ok(Decision::Denied(message));
        }
        Ok(Decision::Allowed)
    }
}

/// The compiled `matchConditions` of one webhook: the API server calls the webhook only when all
/// of them are true.
pub struct MatchConditions {
    env: Arc<Env>,
    conditions: Vec<(String, Program)>,
}

impl MatchConditions {
    /// Compiles `webhook.matchConditions` (absent: matches everything).
    pub fn from_webhook(webhook: &Json) -> Result<MatchConditions, CelError> {
        let env = kubernetes_env();
        let mut conditions = Vec::new();
        for (i, condition) in webhook
            .get("matchConditions")
            .and_then(Json::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            let what = format!("matchConditions[{i}]");
            let name = string_at(condition, "/name", &what)?;
            let source = string_at(condition, "/expression", &what)?;
            conditions.push((
                name.to_owned(),
                compile(&env, &format!("matchCondition {name}"), source)?,
            ));
        }
        Ok(MatchConditions { env, conditions })
    }

    pub fn is_empty(&self) -> bool {
        self.conditions.is_empty()
    }

    /// Whether the API server would send the creation of `object` to the webhook.
    pub fn matches(&self, object: &Json) -> Result<bool, CelError> {
        let mut context = Context::with_env(self.env.clone());
        context.add_variable_from_value("object", to_cel(object));
        for (name, program) in &self.conditions {
            match program.execute(&context) {
                Ok(Value::Bool(true)) => {}
                Ok(Value::Bool(false)) => return Ok(false),
                Ok(other) => {
                    return Err(CelError::Type {
                        what: format!("matchCondition {name}"),
                        expected: "bool",
                        got: format!("{other:?}"),
                    });
                }
                Err(e) => {
                    return Err(CelError::Evaluate {
                        what: format!("matchCondition {name}"),
                        message: e.to_string(),
                    });
                }
            }
        }
        Ok(true)
    }
}
