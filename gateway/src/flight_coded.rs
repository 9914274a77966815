//! The Flight SQL server as clients reach it: Arrow Flight's own dispatch
//! (which decodes tickets, commands and actions before Tarn's handlers see
//! them) wrapped so that its refusals too carry a catalogue code.

use std::sync::Arc;

use arrow_flight::flight_service_server::FlightService;
use arrow_flight::{
    Action, Criteria, Empty, FlightData, FlightDescriptor, FlightInfo, HandshakeRequest, PollInfo,
    SchemaResult, Ticket,
};
use tarn_common::{ErrorCode, TarnError};
use tonic::{Request, Response, Status, Streaming};

/// Every error the inner service returns leaves with a Tarn code.
pub struct Coded<T>(pub Arc<T>);

/// A status the inner service made itself keeps its code; one made by the
/// Flight framework (a ticket or command it could not decode, a method
/// Tarn does not serve) gets the catalogue's code for its class.
fn coded(s: Status) -> Status {
    if s.metadata()
        .get(tarn_common::error::ERROR_CODE_HEADER)
        .is_some()
    {
        return s;
    }
    let (code, fix) = match s.code() {
        tonic::Code::Unimplemented => (
            ErrorCode::Unsupported,
            "use a Flight SQL call Tarn serves; see the README",
        ),
        tonic::Code::NotFound => (ErrorCode::NotFound, "check the ticket or handle"),
        _ => (
            ErrorCode::InvalidArgument,
            "send a ticket or command this server produced (use a Flight SQL client)",
        ),
    };
    TarnError::new(
        code,
        format!("the request is not one Tarn can read: {}", s.message()),
    )
    .with_fix(fix)
    .to_status()
}

#[tonic::async_trait]
impl<T: FlightService> FlightService for Coded<T> {
    type HandshakeStream = T::HandshakeStream;
    type ListFlightsStream = T::ListFlightsStream;
    type DoGetStream = T::DoGetStream;
    type DoPutStream = T::DoPutStream;
    type DoExchangeStream = T::DoExchangeStream;
    type DoActionStream = T::DoActionStream;
    type ListActionsStream = T::ListActionsStream;

    async fn handshake(
        &self,
        r: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<Self::HandshakeStream>, Status> {
        self.0.handshake(r).await.map_err(coded)
    }
    async fn list_flights(
        &self,
        r: Request<Criteria>,
    ) -> Result<Response<Self::ListFlightsStream>, Status> {
        self.0.list_flights(r).await.map_err(coded)
    }
    async fn get_flight_info(
        &self,
        r: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.0.get_flight_info(r).await.map_err(coded)
    }
    async fn poll_flight_info(
        &self,
        r: Request<FlightDescriptor>,
    ) -> Result<Response<PollInfo>, Status> {
        self.0.poll_flight_info(r).await.map_err(coded)
    }
    async fn get_schema(
        &self,
        r: Request<FlightDescriptor>,
    ) -> Result<Response<SchemaResult>, Status> {
        self.0.get_schema(r).await.map_err(coded)
    }
    async fn do_get(&self, r: Request<Ticket>) -> Result<Response<Self::DoGetStream>, Status> {
        self.0.do_get(r).await.map_err(coded)
    }
    async fn do_put(
        &self,
        r: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoPutStream>, Status> {
        self.0.do_put(r).await.map_err(coded)
    }
    async fn do_exchange(
        &self,
        r: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoExchangeStream>, Status> {
        self.0.do_exchange(r).await.map_err(coded)
    }
    async fn do_action(
        &self,
        r: Request<Action>,
    ) -> Result<Response<Self::DoActionStream>, Status> {
        self.0.do_action(r).await.map_err(coded)
    }
    async fn list_actions(
        &self,
        r: Request<Empty>,
    ) -> Result<Response<Self::ListActionsStream>, Status> {
        self.0.list_actions(r).await.map_err(coded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framework_refusals_get_a_code_and_ours_keep_theirs() {
        let s = coded(Status::invalid_argument("DecodeError"));
        assert_eq!(
            TarnError::from_status(&s).code,
            ErrorCode::InvalidArgument,
            "{s:?}"
        );
        assert!(s.message().contains("DecodeError"), "{s:?}");
        let ours = TarnError::new(ErrorCode::TableNotFound, "no t").to_status();
        assert_eq!(
            TarnError::from_status(&coded(ours)).code,
            ErrorCode::TableNotFound
        );
        let s = coded(Status::unimplemented("do_exchange"));
        assert_eq!(TarnError::from_status(&s).code, ErrorCode::Unsupported);
    }
}
