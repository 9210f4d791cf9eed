//! A thin client of Triton's `inference.GRPCInferenceService`: one method
//! per RPC the runtime uses, errors turned into [`Error`] with Triton's text.

use std::collections::HashMap;
use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

use crate::proto::inference as pb;
use crate::runtime::Error;
use pb::grpc_inference_service_client::GrpcInferenceServiceClient;

/// How long a quick call (health, index, config) may take. Loads have no
/// limit here: the shell times them out with `runtime.load_timeout`.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub(crate) struct Client {
    endpoint: String,
    inner: GrpcInferenceServiceClient<Channel>,
}

/// One model of the repository index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Indexed {
    pub name: String,
    pub state: String,
    pub reason: String,
}

impl Client {
    /// Connects lazily: Triton may come up after the daemon.
    pub fn new(endpoint: &str) -> Result<Client, Error> {
        let uri = if endpoint.contains("://") {
            endpoint.to_owned()
        } else {
            format!("http://{endpoint}")
        };
        let channel = Endpoint::from_shared(uri)
            .map_err(|e| Error::BadEndpoint {
                endpoint: endpoint.to_owned(),
                message: e.to_string(),
            })?
            .connect_timeout(Duration::from_secs(5))
            .connect_lazy();
        Ok(Client {
            endpoint: endpoint.to_owned(),
            inner: GrpcInferenceServiceClient::new(channel),
        })
    }

    fn fail(&self, status: tonic::Status) -> Error {
        match status.code() {
            tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Cancelled => {
                Error::Unreachable {
                    endpoint: self.endpoint.clone(),
                    message: status.message().to_owned(),
                }
            }
            tonic::Code::DeadlineExceeded => Error::Unreachable {
                endpoint: self.endpoint.clone(),
                message: format!("no answer within {}s", CALL_TIMEOUT.as_secs()),
            },
            _ => Error::Refused(status.message().trim_end_matches([';', '\n']).to_owned()),
        }
    }

    fn quick<T>(msg: T) -> tonic::Request<T> {
        let mut r = tonic::Request::new(msg);
        r.set_timeout(CALL_TIMEOUT);
        r
    }

    /// Whether Triton answers and is live. (Not ServerReady: with Triton's
    /// default strict readiness it is false while any model loads.)
    pub async fn server_live(&self) -> Result<bool, Error> {
        let r = self
            .inner
            .clone()
            .server_live(Self::quick(pb::ServerLiveRequest {}))
            .await;
        Ok(r.map_err(|s| self.fail(s))?.into_inner().live)
    }

    pub async fn model_ready(&self, name: &str) -> Result<bool, Error> {
        let req = pb::ModelReadyRequest {
            name: name.to_owned(),
            version: String::new(),
        };
        let r = self.inner.clone().model_ready(Self::quick(req)).await;
        Ok(r.map_err(|s| self.fail(s))?.into_inner().ready)
    }

    pub async fn model_config(&self, name: &str) -> Result<pb::ModelConfig, Error> {
        let req = pb::ModelConfigRequest {
            name: name.to_owned(),
            version: String::new(),
        };
        let r = self.inner.clone().model_config(Self::quick(req)).await;
        Ok(r.map_err(|s| self.fail(s))?
            .into_inner()
            .config
            .unwrap_or_default())
    }

    /// The repository index (only READY models with `ready_only`).
    pub async fn index(&self, ready_only: bool) -> Result<Vec<Indexed>, Error> {
        let req = pb::RepositoryIndexRequest {
            repository_name: String::new(),
            ready: ready_only,
        };
        let r = self.inner.clone().repository_index(Self::quick(req)).await;
        Ok(r.map_err(|s| self.fail(s))?
            .into_inner()
            .models
            .into_iter()
            .map(|m| Indexed {
                name: m.name,
                state: m.state,
                reason: m.reason,
            })
            .collect())
    }

    /// Loads (or reloads, or updates in place) `name`; with `config`, that
    /// JSON ModelConfig replaces the repository's config.pbtxt.
    pub async fn load(&self, name: &str, config: Option<String>) -> Result<(), Error> {
        let mut parameters = HashMap::new();
        if let Some(c) = config {
            parameters.insert(
                "config".to_owned(),
                pb::ModelRepositoryParameter {
                    parameter_choice: Some(
                        pb::model_repository_parameter::ParameterChoice::StringParam(c),
                    ),
                },
            );
        }
        let req = pb::RepositoryModelLoadRequest {
            repository_name: String::new(),
            model_name: name.to_owned(),
            parameters,
        };
        self.inner
            .clone()
            .repository_model_load(req)
            .await
            .map_err(|s| self.fail(s))?;
        Ok(())
    }

    /// Asks for an unload; Triton answers before the model is gone.
    pub async fn unload(&self, name: &str) -> Result<(), Error> {
        let req = pb::RepositoryModelUnloadRequest {
            repository_name: String::new(),
            model_name: name.to_owned(),
            parameters: HashMap::new(),
        };
        self.inner
            .clone()
            .repository_model_unload(Self::quick(req))
            .await
            .map_err(|s| self.fail(s))?;
        Ok(())
    }
}
