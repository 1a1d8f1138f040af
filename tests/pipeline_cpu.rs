//! End-to-end CPU pipeline on the synthetic scene: 8 cameras of different sizes and
//! formats → trtmux → trtpreprocess → trtinfer → trtmaskselect → trtdemux, every
//! detection and mask checked against the scene's ground truth.

mod common;

use common::groundtruth::{check_against_ground_truth, run_pipeline};

#[test]
fn eight_cameras_yolo_seg_boxes_and_masks_match_ground_truth() {
    let frames = 12;
    let seen = run_pipeline("shapes-yolo-seg.toml", frames, "", "");
    check_against_ground_truth(&seen, frames, true);
}

#[test]
fn eight_cameras_detr_boxes_and_masks_match_ground_truth() {
    let frames = 6;
    let seen = run_pipeline("shapes-detr.toml", frames, "", "");
    check_against_ground_truth(&seen, frames, true);
}

#[test]
fn eight_cameras_yolo_boxes_match_ground_truth() {
    let frames = 6;
    let seen = run_pipeline("shapes-yolo.toml", frames, "", "");
    check_against_ground_truth(&seen, frames, false);
}

/// trtinfer fixed-batch: the batch dimension fixed at 12 when the model loads, every batch
/// of 8 padded to 12 rows; the results are still the scene's ground truth.
#[test]
fn eight_cameras_yolo_seg_with_a_fixed_padded_batch_match_ground_truth() {
    let frames = 6;
    let seen = run_pipeline(
        "shapes-yolo-seg.toml",
        frames,
        "fixed-batch=true max-batch=12",
        "",
    );
    check_against_ground_truth(&seen, frames, true);
}
