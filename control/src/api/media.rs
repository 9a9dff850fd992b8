//! `Accept` headers: whether a client offers a media type with given
//! parameters (`application/json;as=Table;g=meta.k8s.io;v=v1`), and whether
//! it prefers protobuf to JSON.

use super::protobuf;

/// Whether one of the media ranges of `accept` has all of `parameters`.
pub fn offers(accept: Option<&str>, parameters: &[&str]) -> bool {
    accept.is_some_and(|accept| {
        accept.split(',').any(|media| {
            let offered: Vec<&str> = media.split(';').map(str::trim).collect();
            parameters.iter().all(|wanted| offered.contains(wanted))
        })
    })
}

/// Whether the client's preferred plain media type (highest `q`, then
/// first; ranges asking for another form with `as=` aside) is protobuf, as
/// kube-apiserver negotiates: client-go sends
/// `application/vnd.kubernetes.protobuf, */*`.
pub fn prefers_protobuf(accept: Option<&str>) -> bool {
    let Some(accept) = accept else {
        return false;
    };
    let mut best: Option<(f32, &str)> = None;
    for range in accept.split(',') {
        let mut parts = range.split(';').map(str::trim);
        let media = parts.next().unwrap_or_default();
        let mut quality = 1.0;
        let mut other_form = false;
        for parameter in parts {
            match parameter.split_once('=') {
                Some(("q", value)) => quality = value.trim().parse().unwrap_or(0.0),
                Some(("as", _)) => other_form = true,
                _ => {}
            }
        }
        let served = matches!(
            media,
            protobuf::MEDIA_TYPE | "application/json" | "application/*" | "*/*"
        );
        if served && !other_form && quality > 0.0 && best.is_none_or(|(q, _)| quality > q) {
            best = Some((quality, media));
        }
    }
    best.is_some_and(|(_, media)| media == protobuf::MEDIA_TYPE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_parameters_of_one_range() {
        let accept = Some("application/json;as=Table;v=v1;g=meta.k8s.io,application/json");
        assert!(offers(accept, &["as=Table", "g=meta.k8s.io", "v=v1"]));
        assert!(!offers(accept, &["as=Table", "v=v2"]));
        assert!(!offers(
            Some("application/json;as=Table,v=v1"),
            &["as=Table", "v=v1"]
        ));
        assert!(!offers(None, &["as=Table"]));
    }

    #[test]
    fn protobuf_when_preferred() {
        assert!(prefers_protobuf(Some(
            "application/vnd.kubernetes.protobuf, */*"
        )));
        assert!(prefers_protobuf(Some(
            "application/json;q=0.5, application/vnd.kubernetes.protobuf"
        )));
        assert!(!prefers_protobuf(Some(
            "application/json, application/vnd.kubernetes.protobuf"
        )));
        assert!(!prefers_protobuf(Some(
            "application/vnd.kubernetes.protobuf;as=Table;v=v1;g=meta.k8s.io, application/json"
        )));
        assert!(!prefers_protobuf(Some(
            "application/vnd.kubernetes.protobuf;q=0, */*"
        )));
        assert!(!prefers_protobuf(None));
    }
}
