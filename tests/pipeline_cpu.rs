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
