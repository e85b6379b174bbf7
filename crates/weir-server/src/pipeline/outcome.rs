//! What an action hands back to the pipeline: the response and what must live as long as its
//! body. A leaf, so actions and the cache phase can return it without importing the pipeline.

use weir_core::ResponseBody;

use http::Response;

/// What an action produced.
pub(crate) struct Outcome {
    pub(crate) response: Response<ResponseBody>,
    /// For proxied responses with a total timeout: when streaming must end.
    pub(crate) deadline: Option<tokio::time::Instant>,
    /// For proxied responses: the upstream connection and slot, released after the body.
    pub(crate) conn: Option<weir_upstream::UpstreamGuard>,
    /// The route's compression, decided from the request's `Accept-Encoding`.
    pub(crate) compress: Option<crate::compress::Plan>,
}

impl From<Response<ResponseBody>> for Outcome {
    fn from(response: Response<ResponseBody>) -> Self {
        Self {
            response,
            deadline: None,
            conn: None,
            compress: None,
        }
    }
}

impl Outcome {
    /// The outcome with the route's compression plan, applied in the response phase.
    pub(crate) fn compressed(mut self, plan: Option<crate::compress::Plan>) -> Self {
        self.compress = plan;
        self
    }
}
