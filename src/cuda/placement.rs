//! Which GPU a frame is on, and what an element pinned to a GPU does with it.
//!
//! An element runs on one CUDA device (its `device-id`, or the device of the pipeline's
//! `gst.cuda.context`). A frame whose GstCudaMemory belongs to a context of another device
//! is refused with an error naming both devices, unless the element allows peer access
//! (`allow-peer-copy`), in which case kernels read it through CUDA peer access. A frame of
//! another context of the same device that the element's context cannot read takes the
//! CPU path, as before (GstCudaMemory downloads it).

use super::{CudaContext, CudaError, CudaFrameMap};

/// What an element does with a frame of GstCudaMemory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FramePlacement {
    /// The element's kernels read the frame where it is.
    Direct,
    /// Another context of the element's device that cannot be read from the element's:
    /// the CPU path.
    Download,
}

/// The decision for a frame on device `frame_device` seen by an element on
/// `element_device`; `accessible`: whether the element's context can read the frame's
/// memory (same context, or peer access enabled between the two contexts).
pub fn decide(
    element_device: u32,
    frame_device: u32,
    accessible: bool,
    allow_peer_copy: bool,
) -> Result<FramePlacement, CudaError> {
    if frame_device != element_device {
        if !allow_peer_copy {
            return Err(CudaError::ForeignDevice {
                frame: frame_device,
                element: element_device,
                peer: false,
            });
        }
        if !accessible {
            return Err(CudaError::ForeignDevice {
                frame: frame_device,
                element: element_device,
                peer: true,
            });
        }
        return Ok(FramePlacement::Direct);
    }
    Ok(if accessible {
        FramePlacement::Direct
    } else {
        FramePlacement::Download
    })
}

/// [`decide`] for a mapped frame and the element's context.
pub fn place_frame(
    ctx: &CudaContext,
    map: &CudaFrameMap,
    allow_peer_copy: bool,
) -> Result<FramePlacement, CudaError> {
    let Some(mem_ctx) = map.context() else {
        return Ok(FramePlacement::Download);
    };
    decide(
        ctx.device_id(),
        mem_ctx.device_id(),
        map.is_accessible_from(ctx),
        allow_peer_copy,
    )
}

/// The sentence of [`CudaError::ForeignDevice`].
pub(super) fn foreign_device(frame: u32, element: u32, peer: bool) -> String {
    if peer {
        format!(
            "the frame is in the memory of CUDA device {frame} and this element runs on device {element}, \
             but peer access between the two devices is not available: put the element on device {frame} \
             (device-id={frame})"
        )
    } else {
        format!(
            "the frame is in the memory of CUDA device {frame} but this element runs on device {element}: \
             put the element on device {frame} (device-id={frame}) or set allow-peer-copy=true to read it \
             across devices"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_device_is_read_in_place_or_downloaded() {
        assert_eq!(decide(0, 0, true, false), Ok(FramePlacement::Direct));
        assert_eq!(decide(1, 1, true, true), Ok(FramePlacement::Direct));
        assert_eq!(decide(0, 0, false, false), Ok(FramePlacement::Download));
    }

    #[test]
    fn another_device_is_refused_without_peer_copy() {
        let e = decide(0, 1, true, false).unwrap_err();
        assert_eq!(
            e,
            CudaError::ForeignDevice {
                frame: 1,
                element: 0,
                peer: false
            }
        );
        let text = e.to_string();
        assert!(text.contains("CUDA device 1"), "{text}");
        assert!(text.contains("device 0"), "{text}");
        assert!(text.contains("allow-peer-copy"), "{text}");
    }

    #[test]
    fn another_device_with_peer_copy_needs_peer_access() {
        assert_eq!(decide(0, 1, true, true), Ok(FramePlacement::Direct));
        let e = decide(2, 0, false, true).unwrap_err();
        assert!(e.to_string().contains("peer access"), "{e}");
        assert!(e.to_string().contains("device 2"), "{e}");
    }
}
