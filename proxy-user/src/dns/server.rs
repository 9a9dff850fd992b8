//! The DNS server's request handler: questions about the cluster are
//! answered from the index, authoritatively; others are forwarded to the
//! upstream servers, or refused when there are none.

use hickory_proto::op::{Edns, Header, HeaderCounts, MessageType, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::{DNSClass, Record};
use hickory_server::net::runtime::Time;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use tracing::{debug, warn};

use super::answer::{Answer, Zone};
use super::forward::Forwarder;
use super::index::SharedIndex;

/// The smallest payload every DNS client takes over UDP.
const MIN_UDP_PAYLOAD: u16 = 512;

pub struct Handler {
    pub index: SharedIndex,
    pub zone: Zone,
    pub forwarder: Forwarder,
}

/// A response's sections.
#[derive(Default)]
struct Sections {
    answers: Vec<Record>,
    authorities: Vec<Record>,
    additionals: Vec<Record>,
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        response_handle: R,
    ) -> ResponseInfo {
        let edns = request.edns.as_ref().map(|asked| {
            let mut edns = Edns::new();
            edns.set_max_payload(asked.max_payload().max(MIN_UDP_PAYLOAD));
            edns
        });
        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.recursion_available = self.forwarder.is_configured();
        if request.metadata.message_type != MessageType::Query
            || request.metadata.op_code != OpCode::Query
        {
            metadata.response_code = ResponseCode::NotImp;
            return reply(
                request,
                edns.as_ref(),
                response_handle,
                metadata,
                Sections::default(),
            )
            .await;
        }
        let query = match request.request_info() {
            Ok(info) => info.query,
            Err(_) => {
                metadata.response_code = ResponseCode::FormErr;
                return reply(
                    request,
                    edns.as_ref(),
                    response_handle,
                    metadata,
                    Sections::default(),
                )
                .await;
            }
        };
        let name = query.original().name();
        let (answer, soa) = {
            let index = self.index.read();
            let answer = match query.query_class() {
                DNSClass::IN | DNSClass::ANY => self.zone.answer(&index, name, query.query_type()),
                _ => Answer::NotOurs,
            };
            (answer, self.zone.soa(index.serial()))
        };
        let sections = match answer {
            Answer::Records {
                answers,
                additionals,
            } => {
                metadata.authoritative = true;
                Sections {
                    answers,
                    additionals,
                    ..Sections::default()
                }
            }
            Answer::NoData | Answer::NxDomain => {
                metadata.authoritative = true;
                if answer == Answer::NxDomain {
                    metadata.response_code = ResponseCode::NXDomain;
                }
                Sections {
                    authorities: vec![soa],
                    ..Sections::default()
                }
            }
            Answer::NotOurs if !self.forwarder.is_configured() => {
                metadata.response_code = ResponseCode::Refused;
                Sections::default()
            }
            Answer::NotOurs => match self
                .forwarder
                .forward(request.as_slice(), request.metadata.id)
                .await
            {
                Some(upstream) => {
                    metadata.response_code = upstream.metadata.response_code;
                    metadata.authoritative = false;
                    metadata.truncation = upstream.metadata.truncation;
                    Sections {
                        answers: upstream.answers,
                        authorities: upstream.authorities,
                        additionals: upstream.additionals,
                    }
                }
                None => {
                    warn!(%name, query_type = %query.query_type(), "no upstream DNS server answered");
                    metadata.response_code = ResponseCode::ServFail;
                    Sections::default()
                }
            },
        };
        reply(request, edns.as_ref(), response_handle, metadata, sections).await
    }
}

async fn reply<R: ResponseHandler>(
    request: &Request,
    edns: Option<&Edns>,
    mut response_handle: R,
    metadata: Metadata,
    sections: Sections,
) -> ResponseInfo {
    let mut builder = MessageResponseBuilder::from_message_request(request);
    if let Some(edns) = edns {
        builder.edns(edns);
    }
    let response = builder.build(
        metadata,
        sections.answers.iter(),
        sections.authorities.iter(),
        std::iter::empty(),
        sections.additionals.iter(),
    );
    match response_handle.send_response(response).await {
        Ok(info) => info,
        Err(error) => {
            debug!(src = %request.src(), %error, "sending a DNS answer failed");
            let mut failed = Metadata::response_from_request(&request.metadata);
            failed.response_code = ResponseCode::ServFail;
            ResponseInfo::from(Header {
                metadata: failed,
                counts: HeaderCounts::default(),
            })
        }
    }
}
