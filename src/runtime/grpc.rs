//! A model runtime reached over gRPC (`vision.v1.ModelRuntime`).

use tonic::transport::{Channel, Endpoint};

use super::{Error, LoadRequest, Loaded, LoadedCopy, ModelRuntime, UnloadReason};
use crate::proto::vision::v1 as pb;
use pb::model_runtime_client::ModelRuntimeClient;

/// Client of a node-local model server at `unix:///path` or `http://host:port`.
#[derive(Debug, Clone)]
pub(crate) struct GrpcRuntime {
    endpoint: String,
    client: ModelRuntimeClient<Channel>,
}

impl GrpcRuntime {
    /// Connects lazily: the model server may start after the daemon; calls
    /// made before it is up fail (and the loads waiting on them with it).
    pub(crate) fn new(endpoint: &str) -> Result<GrpcRuntime, Error> {
        let bad = |message: String| Error::BadEndpoint {
            endpoint: endpoint.to_owned(),
            message,
        };
        let channel = Endpoint::from_shared(endpoint.to_owned())
            .map_err(|e| bad(e.to_string()))?
            .connect_lazy();
        Ok(GrpcRuntime {
            endpoint: endpoint.to_owned(),
            client: ModelRuntimeClient::new(channel),
        })
    }

    fn fail(&self, status: tonic::Status) -> Error {
        match status.code() {
            tonic::Code::Unavailable | tonic::Code::Unknown => Error::Unreachable {
                endpoint: self.endpoint.clone(),
                message: status.message().to_owned(),
            },
            code => Error::Refused(format!("{code:?}: {}", status.message())),
        }
    }
}

#[tonic::async_trait]
impl ModelRuntime for GrpcRuntime {
    fn kind(&self) -> &'static str {
        "grpc"
    }

    async fn load(&self, req: LoadRequest) -> Result<Loaded, Error> {
        let reply = self
            .client
            .clone()
            .load_model(pb::LoadModelRequest {
                model: req.model,
                gpu_uuid: req.gpu_uuid,
                gpu_index: req.gpu_index,
                weights_mib: req.weights_mib,
                load_id: req.load_id,
            })
            .await
            .map_err(|s| self.fail(s))?
            .into_inner();
        Ok(Loaded {
            endpoint: reply.endpoint,
            runtime_model: reply.runtime_model,
            size_mib: (reply.size_mib > 0).then_some(reply.size_mib),
        })
    }

    async fn unload(&self, model: &str, gpu_uuid: &str, reason: UnloadReason) -> Result<(), Error> {
        self.client
            .clone()
            .unload_model(pb::UnloadModelRequest {
                model: model.to_owned(),
                gpu_uuid: gpu_uuid.to_owned(),
                reason: reason.as_str().to_owned(),
            })
            .await
            .map_err(|s| self.fail(s))?;
        Ok(())
    }

    /// The SPI has no health call: a model server that answers ListLoaded
    /// is there.
    async fn ready(&self) -> Result<(), Error> {
        self.client
            .clone()
            .list_loaded(pb::ListLoadedRequest {})
            .await
            .map_err(|s| self.fail(s))?;
        Ok(())
    }

    async fn list_loaded(&self) -> Result<Vec<LoadedCopy>, Error> {
        let reply = self
            .client
            .clone()
            .list_loaded(pb::ListLoadedRequest {})
            .await
            .map_err(|s| self.fail(s))?
            .into_inner();
        Ok(reply
            .models
            .into_iter()
            .map(|m| LoadedCopy {
                model: m.model,
                gpu_uuid: m.gpu_uuid,
                size_mib: m.size_mib,
                endpoint: m.endpoint,
                runtime_model: m.runtime_model,
            })
            .collect())
    }
}
