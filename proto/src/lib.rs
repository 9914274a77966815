//! Protobuf contracts between Tarn's roles (package `tarn.v1`).
//!
//! The generated code in `src/generated` is checked in; regenerate it with
//! `cargo run -p tarn-proto-gen` after editing `proto/tarn.proto`.

#[allow(missing_docs, clippy::all, clippy::clone_on_ref_ptr, unused_qualifications)]
#[rustfmt::skip]
mod generated {
    include!("generated/tarn.v1.rs");
}

pub use generated::*;

pub mod json;
pub mod leader;

/// What an executor's Flight `DoGet` ticket starts with when it carries a
/// [`DirectTicket`] (a direct run) rather than a Ballista shuffle fetch.
pub const DIRECT_TICKET_MAGIC: &[u8] = b"TARN-DIRECT1:";

impl Pool {
    /// The pool's name as users and configuration write it.
    pub fn label(self) -> &'static str {
        match self {
            Pool::Interactive => "interactive",
            Pool::Job => "job",
            Pool::Unspecified => "unspecified",
        }
    }

    /// Parses `interactive` or `job`.
    pub fn from_label(s: &str) -> Option<Pool> {
        match s.to_ascii_lowercase().as_str() {
            "interactive" => Some(Pool::Interactive),
            "job" => Some(Pool::Job),
            _ => None,
        }
    }
}

impl JobRunState {
    /// The state's name as the REST API shows it.
    pub fn label(self) -> &'static str {
        match self {
            JobRunState::Queued => "queued",
            JobRunState::Running => "running",
            JobRunState::Succeeded => "succeeded",
            JobRunState::Failed => "failed",
            JobRunState::Cancelled => "cancelled",
            JobRunState::Expired => "expired",
            JobRunState::TimedOut => "timed_out",
            JobRunState::Skipped => "skipped",
            JobRunState::Unspecified => "unknown",
        }
    }
}

/// A client of the coordinator at `addr` (`host:port`) over the internal
/// plane: mutual TLS with this process's cluster identity.
pub async fn connect_coordinator(
    addr: &str,
) -> Result<coordinator_client::CoordinatorClient<tonic::transport::Channel>, tonic::transport::Error>
{
    let channel = tarn_common::cluster::endpoint(addr)?.connect().await?;
    Ok(coordinator_client::CoordinatorClient::new(channel))
}

/// A coordinator request: each carries the caller's [`RequestHeader`].
pub trait Headed {
    /// The caller's header, if it sent one.
    fn header(&self) -> Option<&RequestHeader>;
}

macro_rules! headed {
    ($($t:ident),* $(,)?) => {
        $(impl Headed for $t {
            fn header(&self) -> Option<&RequestHeader> {
                self.header.as_ref()
            }
        })*
    };
}

headed!(
    HealthRequest,
    RegisterExecutorRequest,
    GetClusterInfoRequest,
    ListJobsRequest,
    CancelQueryRequest,
    GetQueryProgressRequest,
    AcquireLeaseRequest,
    RenewLeasesRequest,
    ReleaseLeaseRequest,
    ReserveDirectRequest,
    ReleaseDirectRequest,
    ListLeasesRequest,
    GetPoolsRequest,
    SubmitJobRunRequest,
    GetJobRunRequest,
    ListJobRunsRequest,
    CancelJobRunRequest,
    FinishJobRunRequest,
    PutJobRequest,
    GetJobRequest,
    ListJobDefinitionsRequest,
    DeleteJobRequest,
    RunJobRequest,
    ClaimJobRunRequest,
    ReportJobRunRequest,
);

/// A request header for this build's protocol version.
pub fn header() -> RequestHeader {
    RequestHeader {
        protocol_version: tarn_common::PROTOCOL_VERSION,
    }
}
