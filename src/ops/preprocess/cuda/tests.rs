use super::*;
use crate::config::ResizeMode;
use crate::cuda::frame::{KIND_PACKED, KIND_PACKED4};
use crate::cuda::nvrtc::compile;

#[test]
fn params_follow_the_cpu_geometry() {
    let cfg = PreprocessConfig {
        dtype: DType::F16,
        color: ColorOrder::Bgr,
        mean: [0.5, 0.25, 0.0],
        std: [2.0, 1.0, 0.5],
        ..Default::default()
    };
    let n = NormParams::new(&cfg);
    assert_eq!((n.order, n.f16, n.out_w, n.out_h), ([2, 1, 0], 1, 640, 640));
    for c in 0..3 {
        let want = (114.0 * cfg.scale - cfg.mean[c]) / cfg.std[c];
        assert!((n.pad[c] - want).abs() < 1e-6);
    }
    // SAFETY: never read.
    let f = unsafe { CudaFrame::from_raw(gst_video::VideoFormat::Bgrx, 1920, 1080, &[0x10000], &[7680]) }
        .unwrap();
    let t = cfg.transform(1920, 1080);
    let p = FrameParams::new(&f, &t, &cfg);
    assert_eq!((p.kind, p.off_r, p.off_b, p.bpp), (KIND_PACKED4, 2, 0, 4));
    assert_eq!((p.x0, p.x1, p.y0, p.y1), (0, 640, 140, 500));
    // SAFETY: never read.
    let f =
        unsafe { CudaFrame::from_raw(gst_video::VideoFormat::Rgb, 641, 479, &[0x10001], &[1923]) }.unwrap();
    let s = PreprocessConfig {
        resize: ResizeMode::Stretch,
        ..cfg
    };
    let p = FrameParams::new(&f, &s.transform(641, 479), &s);
    assert_eq!((p.kind, p.x0, p.x1, p.y0, p.y1), (KIND_PACKED, 0, 640, 0, 640));
}

#[test]
fn nv12_entry_point_conditions() {
    let cfg = PreprocessConfig::default();
    let params = |format, w, h, planes: &[u64], strides: &[usize]| {
        // SAFETY: never read.
        let f = unsafe { CudaFrame::from_raw(format, w, h, planes, strides) }.unwrap();
        FrameParams::new(&f, &cfg.transform(w, h), &cfg)
    };
    let nv12 = gst_video::VideoFormat::Nv12;
    assert!(nv12_fast(&params(
        nv12,
        1920,
        1080,
        &[0x10000, 0x20000],
        &[2048, 2048]
    )));
    assert!(nv12_fast(&params(nv12, 2, 2, &[0x10000, 0x20000], &[2, 2])));
    // Odd chroma stride or address: 16-bit UV loads would be misaligned.
    assert!(!nv12_fast(&params(
        nv12,
        641,
        479,
        &[0x10000, 0x20000],
        &[643, 643]
    )));
    assert!(!nv12_fast(&params(
        nv12,
        640,
        480,
        &[0x10000, 0x20001],
        &[640, 640]
    )));
    // One column or row: its taps are (0, 0), not (i, i + 1).
    assert!(!nv12_fast(&params(nv12, 1, 480, &[0x10000, 0x20000], &[64, 64])));
    assert!(!nv12_fast(&params(
        nv12,
        640,
        1,
        &[0x10000, 0x20000],
        &[640, 640]
    )));
    assert!(!nv12_fast(&params(
        gst_video::VideoFormat::I420,
        640,
        480,
        &[0x10000, 0x20000, 0x30000],
        &[640, 320, 320]
    )));
    assert_eq!(
        nv12_kernel_name(4, ColorOrder::Bgr, false)
            .unwrap()
            .to_str()
            .unwrap(),
        "trtv_preprocess_nchw_x4_nv12bgr_inline"
    );
    assert_eq!(
        nv12_kernel_name(1, ColorOrder::Rgb, true)
            .unwrap()
            .to_str()
            .unwrap(),
        "trtv_preprocess_nchw_nv12rgb_inline8"
    );
    assert!(nv12_kernel_name(3, ColorOrder::Rgb, false).is_err());
    assert_eq!(NormParams::new(&cfg).float_bits, 8_388_608f32.to_bits());
}

/// Compiles the kernel where NVRTC is installed (no GPU needed); skipped elsewhere.
#[test]
fn nvrtc_compiles_the_kernel() {
    let Some(text) = crate::ops::kernels::sm90_ptx_for_test(KERNEL_SOURCE, KERNEL_FILE) else {
        return;
    };
    for (px, (name, inline, staged)) in KERNEL_NAMES {
        for n in [name, inline, staged] {
            let entry = format!(".entry {}(", n.to_str().unwrap());
            assert!(text.contains(&entry), "{entry} missing");
        }
        for (color, small) in [ColorOrder::Rgb, ColorOrder::Bgr]
            .into_iter()
            .flat_map(|c| [(c, false), (c, true)])
        {
            let entry = format!(
                ".entry {}(",
                nv12_kernel_name(px, color, small).unwrap().to_str().unwrap()
            );
            assert!(text.contains(&entry), "{entry} missing");
        }
    }
    assert!(
        text.contains(".param .align 8 .b8 trtv_preprocess_nchw_x4_inline_param_0[3840]"),
        "inline parameters are one 3840-byte argument"
    );
    assert!(
        text.contains("st.global.v4.u32"),
        "the x8 f16 store is one 16-byte store"
    );
    assert!(
        text.contains("st.global.v2.u32"),
        "the x4 f16 store is one 8-byte store"
    );
    assert!(
        text.contains("st.global.v4.f32"),
        "f32 stores of 4 pixels are one 16-byte store"
    );
    assert!(!text.contains("fma.rn.f32"), "contraction must be off");
    assert!(
        text.contains("div.rn.f32") && !text.contains("div.approx"),
        "IEEE division expected"
    );
    assert!(text.contains("cvt.rn.f16.f32"));
    assert!(!text.contains(".local"), "no local memory expected");
    // Cached.
    let ptx = compile(KERNEL_SOURCE, KERNEL_FILE, "compute_90").unwrap();
    assert!(Arc::ptr_eq(
        &ptx,
        &compile(KERNEL_SOURCE, KERNEL_FILE, "compute_90").unwrap()
    ));
}

#[test]
fn staging_slots_follow_the_downscale() {
    let frame = |kind: i32, scale: f32| FrameParams {
        kind,
        scale_x: scale,
        ..Default::default()
    };
    // 1080p into 640: 128 output columns per warp read 384 source columns.
    let hd = frame(KIND_NV12, 1.0 / 3.0);
    assert_eq!(stage_bytes(&[hd], 4, (32, 8)), 448);
    // 4K into 640 (I420 too); the largest frame of the batch decides.
    let uhd = frame(KIND_I420, 1.0 / 6.0);
    assert_eq!(stage_bytes(&[hd, uhd], 4, (32, 8)), 832);
    // 8K into 640 would need 51 KiB per block of 8 warps: direct loads; a block of
    // 4 warps still fits.
    let big = frame(KIND_NV12, 1.0 / 12.0);
    assert_eq!(stage_bytes(&[big], 4, (32, 8)), 0);
    assert_eq!(stage_bytes(&[big], 4, (32, 4)), 1600);
    // Packed RGB frames never stage.
    assert_eq!(stage_bytes(&[frame(KIND_PACKED, 0.5)], 4, (32, 8)), 0);
    assert_eq!(stage_bytes(&[], 4, (32, 8)), 0);
}

#[test]
fn kernel_names_by_pixels_per_thread() {
    assert_eq!(kernel_names(1).unwrap().0, KERNEL_NAME);
    let (x8, x8_inline, _) = kernel_names(8).unwrap();
    assert_eq!(x8.to_str().unwrap(), "trtv_preprocess_nchw_x8");
    assert_eq!(x8_inline.to_str().unwrap(), "trtv_preprocess_nchw_x8_inline");
    for bad in [0, 3, 16] {
        assert!(
            matches!(kernel_names(bad), Err(CudaError::InvalidInput(_))),
            "{bad}"
        );
    }
    assert!(KERNEL_SOURCE.contains(&format!("#define INLINE_FRAMES {INLINE_FRAMES}\n")));
    assert!(KERNEL_SOURCE.contains(&format!("#define INLINE_FRAMES_SMALL {INLINE_FRAMES_SMALL}\n")));
    assert!(KERNEL_SOURCE.contains(&format!("#define MAX_BLOCK_COLUMNS {MAX_BLOCK_COLUMNS}\n")));
    assert!(640u32.is_multiple_of(DEFAULT_PIXELS_PER_THREAD));
}

#[test]
fn handles_are_thread_safe() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<CudaPreprocessor>();
    send_sync::<DeviceTensorLease>();
    send_sync::<CudaFrame>();
    send_sync::<DeviceContext>();
}

#[test]
fn kernel_source_matches_the_layouts() {
    for needle in [
        "unsigned long long plane[3];",
        "int stride[3];",
        "float a[3];",
        "int order[3];",
        "trtv_preprocess_nchw",
        "#define KIND_PACKED4 1",
        "#define KIND_NV12 2",
        "#define KIND_I420 3",
    ] {
        assert!(KERNEL_SOURCE.contains(needle), "{needle}");
    }
    // YUV converts with each frame's coefficients (the CPU's formula, no constants).
    let compiled = crate::cuda::nvrtc::expand_includes(KERNEL_SOURCE);
    assert!(compiled.contains("const float cc = k[1] * (yy - k[0]);"));
    assert!(!compiled.contains("1.164383f"), "no fixed BT.601 constant");
    assert_eq!(KERNEL_NAME.to_str().ok(), Some("trtv_preprocess_nchw"));
}
