//! What every admin request reads. A leaf of the admin module.

use std::sync::Arc;

use crate::control::Control;
use crate::shared::Shared;

/// What every admin request reads: the data plane's state and the control plane.
pub(crate) struct Admin {
    pub(super) shared: Arc<Shared>,
    pub(super) control: Arc<Control>,
}
