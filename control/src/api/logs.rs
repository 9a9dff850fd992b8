//! `pods/<name>/log`: proxied to the agent of the pod's node (`kubelet`), at
//! `/containerLogs/<namespace>/<pod>/<container>`
//! with the query (follow, tailLines, sinceSeconds, timestamps, previous,
//! limitBytes) passed on, the body streamed back as it comes.

use http::Request;
use http_body_util::BodyExt;
use tokio::sync::mpsc;

use super::kubelet::Kubelet;
use super::query::Query;
use super::status::ApiError;
use super::{Api, Reply};

/// The query without `container` (that is in the path).
fn passed_on(query: Option<&str>) -> String {
    query
        .unwrap_or_default()
        .split('&')
        .filter(|pair| !pair.is_empty() && !pair.starts_with("container="))
        .collect::<Vec<_>>()
        .join("&")
}

impl Api {
    /// GET `pods/<name>/log`.
    pub(super) async fn pod_log(
        &self,
        namespace: &str,
        name: &str,
        container_asked: Option<&str>,
        raw_query: Option<&str>,
    ) -> Result<Reply, ApiError> {
        check_numbers(raw_query)?;
        let kubelet = self
            .connect_kubelet(namespace, name, container_asked)
            .await?;
        let mut path = format!("/containerLogs/{namespace}/{name}/{}", kubelet.container);
        let query = passed_on(raw_query);
        if !query.is_empty() {
            path = format!("{path}?{query}");
        }
        stream_from_agent(kubelet, &path).await
    }
}

/// The numeric options are non-negative integers that fit in 64 bits: a bad
/// one is the client's 400 here, not the agent's problem.
fn check_numbers(raw_query: Option<&str>) -> Result<(), ApiError> {
    let query = Query::parse(raw_query)?;
    for key in ["tailLines", "sinceSeconds", "limitBytes"] {
        query.number(key)?;
    }
    Ok(())
}

async fn stream_from_agent(kubelet: Kubelet, path: &str) -> Result<Reply, ApiError> {
    let response = kubelet.send(Request::get(path)).await?;
    let status = response.status();
    let mut body = response.into_body();
    if !status.is_success() {
        let text = body
            .collect()
            .await
            .map(|collected| String::from_utf8_lossy(&collected.to_bytes()).into_owned())
            .unwrap_or_default();
        let mut error = ApiError::internal(text.trim().to_owned());
        error.code = status.as_u16();
        return Err(error);
    }
    let (chunks, receiver) = mpsc::channel(16);
    tokio::spawn(async move {
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else { break };
            if let Ok(data) = frame.into_data()
                && chunks.send(data).await.is_err()
            {
                break;
            }
        }
    });
    Ok(Reply::Stream {
        content_type: "text/plain",
        receiver,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passes_the_query_on() {
        assert_eq!(
            passed_on(Some("container=app&follow=true&tailLines=5")),
            "follow=true&tailLines=5"
        );
        assert_eq!(passed_on(None), "");
    }
}
