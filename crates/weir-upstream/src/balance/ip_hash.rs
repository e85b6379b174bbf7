//! IP hash: the client's address picks the endpoint. Slots cover every configured endpoint
//! (weighted), not just the healthy ones, so a client keeps its endpoint while others come
//! and go; if its endpoint is out of service the hash is stirred and tried again, as nginx
//! does.

use super::{random_member, Balancer, Pick, PickCx, View, WEIGHT_SCALE};
use crate::hash::mix;
use crate::Endpoint;

/// How many times a hash is re-stirred before falling back to any member.
const REHASHES: usize = 20;

/// Hash of the client IP over all endpoints.
#[derive(Debug, Default)]
pub struct IpHash;

struct Prepared {
    /// Endpoint index per slot; each endpoint has as many slots as its weight.
    slots: Vec<usize>,
}

impl Balancer for IpHash {
    fn prepare(&self, _view: &View, endpoints: &[Endpoint]) -> Box<dyn Pick> {
        let slots = endpoints
            .iter()
            .enumerate()
            .flat_map(|(i, e)| std::iter::repeat_n(i, e.weight as usize))
            .collect();
        Box::new(Prepared { slots })
    }
}

impl Pick for Prepared {
    fn pick(&self, cx: &PickCx<'_>) -> Option<usize> {
        let Some(mut h) = cx.hash else {
            return random_member(cx.view);
        };
        if self.slots.is_empty() {
            return None;
        }
        for _ in 0..REHASHES {
            let e = self.slots[(h % self.slots.len() as u64) as usize];
            if cx.view.in_service.get(e).copied().unwrap_or(false) {
                return Some(e);
            }
            h = mix(h.wrapping_add(u64::from(WEIGHT_SCALE)));
        }
        let n = cx.view.members.len() as u64;
        (n > 0).then(|| cx.view.members[(h % n) as usize])
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    #[test]
    fn same_ip_same_endpoint_and_others_unmoved_when_one_leaves() {
        let eps = endpoints(4, &[]);
        let states = states(4);
        let all = View::all(&eps);
        let p = IpHash.prepare(&all, &eps);
        let mut minus = all.clone();
        minus.in_service[2] = false;
        minus.members.retain(|&m| m != 2);
        minus.weights.pop();
        for ip in 0..1000u32 {
            let h = crate::hash::hash_ip(std::net::IpAddr::from(ip.to_be_bytes()));
            let cx = |view| PickCx {
                view,
                states: &states,
                hash: Some(h),
                now_ms: 0,
            };
            let first = p.pick(&cx(&all));
            assert_eq!(first, p.pick(&cx(&all)));
            let after = p.pick(&cx(&minus));
            if first != Some(2) {
                assert_eq!(first, after);
            } else {
                assert_ne!(after, Some(2));
            }
        }
    }
}
