//! `Accept` headers: whether a client offers a media type with given
//! parameters (`application/json;as=Table;g=meta.k8s.io;v=v1`).

/// Whether one of the media ranges of `accept` has all of `parameters`.
pub fn offers(accept: Option<&str>, parameters: &[&str]) -> bool {
    accept.is_some_and(|accept| {
        accept.split(',').any(|media| {
            let offered: Vec<&str> = media.split(';').map(str::trim).collect();
            parameters.iter().all(|wanted| offered.contains(wanted))
        })
    })
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
}
