//! Outlier ejection after Envoy's outlier detection (`ejection`), shared by
//! the Ingress proxy's pools and the Services' passive health: the
//! `sock_ops` program reports how connects through frontends of Services
//! annotated `skiff.io/outlier-detection` end; backends that keep failing
//! leave the frontend's new-connection choices on this node for a while.
//! The annotation is read by `proxy_common::outlier_annotation` (shared with
//! skiff-control's validation); the per-frontend state is `detector`,
//! Events on the Service `report`; the sync loop applies the ejections.
pub mod detector;
pub mod ejection;
pub mod report;

pub use detector::Detector;
pub use ejection::{OutlierConfig, Outliers};
pub use report::EventReporter;
