//! Readers on fixtures the tests write, augmentations against PIL/torchvision reference outputs
//! and their statistics, the loader's determinism, and every bad-input case.

use std::path::Path;
use std::sync::Arc;

use image::{Rgb, RgbImage};
use mixbt::data::augment::{self, Interp, Op, Transform};
use mixbt::data::{self, cifar, parquet, stl10, Dataset, DatasetKind, DynDataset, Loader, LoaderConfig, Split};
use rand::SeedableRng;

mod common;
use common::fixtures;
use rand_chacha::ChaCha8Rng;

fn synthetic(w: u32, h: u32, seed: u64) -> RgbImage {
    let mut r = mixbt::rng::SplitMix64::new(seed);
    RgbImage::from_fn(w, h, |_, _| Rgb([(r.next_u64() % 256) as u8, (r.next_u64() % 256) as u8, (r.next_u64() % 256) as u8]))
}

// ------------------------------------------------------------------ readers

#[test]
fn cifar10_binary_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("cifar-10-batches-bin");
    std::fs::create_dir_all(&d).unwrap();
    let mut all = vec![];
    for b in 1..=5 {
        let imgs: Vec<(RgbImage, u8)> = (0..3).map(|i| (synthetic(32, 32, b * 10 + i), ((b + i) % 10) as u8)).collect();
        fixtures::write_cifar10_batch(&d.join(format!("data_batch_{b}.bin")), &imgs).unwrap();
        all.extend(imgs);
    }
    let test: Vec<(RgbImage, u8)> = (0..4).map(|i| (synthetic(32, 32, 100 + i), i as u8)).collect();
    fixtures::write_cifar10_batch(&d.join("test_batch.bin"), &test).unwrap();
    let tr = cifar::Cifar10::open_with(dir.path(), Split::Train, cifar::RecordCount::Any).unwrap();
    assert_eq!(tr.len(), 15);
    for (i, (im, l)) in all.iter().enumerate() {
        assert_eq!(&tr.image(i).unwrap(), im);
        assert_eq!(tr.label(i), Some(*l as usize));
    }
    assert_eq!(tr.classes()[0], "airplane");
    let te = cifar::Cifar10::open_with(&d, Split::Test, cifar::RecordCount::Any).unwrap();
    assert_eq!(te.len(), 4);
    assert_eq!(te.image(3).unwrap(), test[3].0);
}

#[test]
fn cifar100_fine_and_coarse() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("cifar-100-binary");
    std::fs::create_dir_all(&d).unwrap();
    let imgs: Vec<(RgbImage, u8, u8)> = (0..5).map(|i| (synthetic(32, 32, i), (i % 20) as u8, (i * 17 % 100) as u8)).collect();
    fixtures::write_cifar100_file(&d.join("train.bin"), &imgs).unwrap();
    fixtures::write_cifar100_file(&d.join("test.bin"), &imgs[..2]).unwrap();
    let fine = cifar::Cifar100::open_with(dir.path(), Split::Train, cifar::CifarLabel::Fine, cifar::RecordCount::Any).unwrap();
    let coarse = cifar::Cifar100::open_with(dir.path(), Split::Train, cifar::CifarLabel::Coarse, cifar::RecordCount::Any).unwrap();
    for (i, (im, c, f)) in imgs.iter().enumerate() {
        assert_eq!(&fine.image(i).unwrap(), im);
        assert_eq!(fine.label(i), Some(*f as usize));
        assert_eq!(coarse.label(i), Some(*c as usize));
    }
    assert_eq!(fine.classes().len(), 100);
    assert_eq!(coarse.classes().len(), 20);
}

#[test]
fn truncated_binary_files_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fixtures::write_cifar10_batch(&d.join("test_batch.bin"), &[(synthetic(32, 32, 1), 1)]).unwrap();
    let bytes = std::fs::read(d.join("test_batch.bin")).unwrap();
    std::fs::write(d.join("test_batch.bin"), &bytes[..bytes.len() - 100]).unwrap();
    let err = cifar::Cifar10::open_with(d, Split::Test, cifar::RecordCount::Any).err().unwrap().to_string();
    assert!(err.contains("test_batch.bin") && err.contains("truncated"), "{err}");
    // Cut at a record boundary: a whole number of records, but not the official 10,000.
    let img = synthetic(32, 32, 2);
    fixtures::write_cifar10_batch(&d.join("test_batch.bin"), &vec![(img.clone(), 3); 9_999]).unwrap();
    let err = cifar::Cifar10::open(d, Split::Test).err().unwrap().to_string();
    assert!(err.contains("test_batch.bin") && err.contains("9999 records") && err.contains("10000"), "{err}");
    fixtures::write_cifar10_batch(&d.join("test_batch.bin"), &vec![(img, 3); 10_000]).unwrap();
    assert_eq!(cifar::Cifar10::open(d, Split::Test).unwrap().len(), 10_000);
    // A record with an impossible label.
    let mut bad = bytes.clone();
    bad[0] = 42;
    std::fs::write(d.join("test_batch.bin"), &bad).unwrap();
    let err = cifar::Cifar10::open_with(d, Split::Test, cifar::RecordCount::Any).err().unwrap().to_string();
    assert!(err.contains("label 42"), "{err}");
    // STL-10: an image file that is not a whole number of 96×96×3 images.
    std::fs::write(d.join("test_X.bin"), vec![0u8; 96 * 96 * 3 + 7]).unwrap();
    std::fs::write(d.join("test_y.bin"), vec![1u8]).unwrap();
    let err = stl10::Stl10::open(d, stl10::Stl10Split::Test).err().unwrap().to_string();
    assert!(err.contains("test_X.bin") && err.contains("truncated"), "{err}");
    // Missing folder layout.
    let err = cifar::Cifar10::open(&d.join("nope"), Split::Test).err().unwrap().to_string();
    assert!(err.contains("nope"), "{err}");
}

#[test]
fn stl10_round_trip_and_splits() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("stl10_binary");
    std::fs::create_dir_all(&d).unwrap();
    let train: Vec<(RgbImage, usize)> = (0..3).map(|i| (synthetic(96, 96, i), i as usize * 3)).collect();
    let unl: Vec<(RgbImage, usize)> = (0..2).map(|i| (synthetic(96, 96, 50 + i), 0)).collect();
    fixtures::write_stl10(&d.join("train_X.bin"), Some(&d.join("train_y.bin")), &train).unwrap();
    fixtures::write_stl10(&d.join("test_X.bin"), Some(&d.join("test_y.bin")), &train[..1]).unwrap();
    fixtures::write_stl10(&d.join("unlabeled_X.bin"), None, &unl).unwrap();
    let tr = stl10::Stl10::open(dir.path(), stl10::Stl10Split::Train).unwrap();
    assert_eq!(tr.len(), 3);
    assert_eq!(tr.image(2).unwrap(), train[2].0);
    assert_eq!(tr.label(1), Some(3));
    let both = stl10::Stl10::open(dir.path(), stl10::Stl10Split::TrainUnlabeled).unwrap();
    assert_eq!(both.len(), 5);
    assert_eq!(both.label(4), None);
    assert_eq!(both.image(4).unwrap(), unl[1].0);
}

fn write_png(p: &Path, img: &RgbImage) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    img.save(p).unwrap();
}

#[test]
fn image_folder_labelled_unlabelled_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("train");
    write_png(&root.join("cat/b.png"), &synthetic(8, 8, 1));
    write_png(&root.join("cat/a.jpg"), &synthetic(8, 8, 2));
    write_png(&root.join("dog/x/c.png"), &synthetic(8, 8, 3));
    std::fs::write(root.join("dog/notes.txt"), "not an image").unwrap();
    let f = data::ImageFolder::open(&root, Default::default()).unwrap();
    assert_eq!(f.classes(), vec!["cat", "dog"]);
    assert_eq!(f.len(), 3);
    assert_eq!(f.files()[0].file_name().unwrap(), "a.jpg"); // sorted
    assert_eq!(f.label(2), Some(1));
    assert_eq!(f.image(1).unwrap(), synthetic(8, 8, 1));
    // Unlabelled folder.
    let flat = dir.path().join("flat");
    write_png(&flat.join("1.png"), &synthetic(4, 4, 5));
    write_png(&flat.join("2.png"), &synthetic(4, 4, 6));
    let u = data::ImageFolder::open(&flat, Default::default()).unwrap();
    assert_eq!((u.len(), u.label(0), u.classes().len()), (2, None, 0));
    // Empty class folder.
    std::fs::create_dir_all(root.join("emu")).unwrap();
    let err = data::ImageFolder::open(&root, Default::default()).err().unwrap().to_string();
    assert!(err.contains("emu") && err.contains("no images"), "{err}");
    std::fs::remove_dir(root.join("emu")).unwrap();
    // Corrupt JPEG: a clear error naming the file, or skipped and counted with skip_corrupt.
    std::fs::write(root.join("cat/c.jpg"), b"\xff\xd8\xff\xe0 this is not a jpeg").unwrap();
    let f = data::ImageFolder::open(&root, Default::default()).unwrap();
    let bad = f.files().iter().position(|p| p.ends_with("cat/c.jpg")).unwrap();
    let err = f.image(bad).unwrap_err().to_string();
    assert!(err.contains("c.jpg") && err.contains("decode"), "{err}");
    let cfg = data::ImageFolderConfig { skip_corrupt: true };
    let f: DynDataset = Arc::new(data::ImageFolder::open(&root, cfg).unwrap());
    let lc = LoaderConfig { batch_size: 4, shuffle: false, drop_last: false, seed: 0, workers: 1, prefetch: 1 };
    let loader = Loader::single(f.clone(), Transform::normalize_only(augment::norm::CIFAR), lc.clone(), &candle_core::Device::Cpu).unwrap();
    let b: Vec<_> = loader.epoch(0, 0).collect::<mixbt::Result<Vec<_>>>().unwrap();
    assert_eq!(b[0].images.dims(), [4, 3, 8, 8]);
    assert_eq!(f.skipped(), 1);
    // Without skip_corrupt, the loader reports the file.
    let f: DynDataset = Arc::new(data::ImageFolder::open(&root, Default::default()).unwrap());
    let loader = Loader::single(f, Transform::normalize_only(augment::norm::CIFAR), lc, &candle_core::Device::Cpu).unwrap();
    let err = loader.epoch(0, 0).find_map(|b| b.err()).unwrap().to_string();
    assert!(err.contains("c.jpg"), "{err}");
}

#[test]
fn parquet_reader_hf_layout_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("plain_text");
    std::fs::create_dir_all(&d).unwrap();
    let imgs: Vec<(RgbImage, usize)> = (0..6).map(|i| (synthetic(32, 32, i), (i % 3) as usize)).collect();
    let names: Vec<String> = ["airplane", "automobile", "bird"].iter().map(|s| s.to_string()).collect();
    fixtures::write_hf_parquet(&d.join("train-00000-of-00001.parquet"), "img", &imgs, Some(&names)).unwrap();
    fixtures::write_hf_parquet(&d.join("test-00000-of-00001.parquet"), "img", &imgs[..2], Some(&names)).unwrap();
    let tr = parquet::ParquetDataset::open_split(dir.path(), Split::Train, Default::default()).unwrap();
    assert_eq!(tr.len(), 6);
    assert_eq!(tr.image(4).unwrap(), imgs[4].0);
    assert_eq!(tr.label(5), Some(2));
    assert_eq!(tr.classes(), names);
    let te = parquet::ParquetDataset::open_split(dir.path(), Split::Test, Default::default()).unwrap();
    assert_eq!(te.len(), 2);
    // Through the generic opener.
    let mut cfg = data::DataConfig::for_kind(DatasetKind::Parquet);
    cfg.dir = Some(dir.path().to_path_buf());
    let ds = data::open(&cfg, Split::Train).unwrap();
    assert_eq!(ds.len(), 6);
    // A parquet file without an image column.
    let bad = dir.path().join("bad.parquet");
    let mut df = polars::prelude::DataFrame::new(2, vec![polars::prelude::Column::new("label".into(), [1i64, 2])]).unwrap();
    polars::prelude::ParquetWriter::new(std::fs::File::create(&bad).unwrap()).finish(&mut df).unwrap();
    let err = parquet::ParquetDataset::open(&bad, Default::default()).err().unwrap().to_string();
    assert!(err.contains("bad.parquet") && err.contains("no image column") && err.contains("label"), "{err}");
    let cfg = parquet::ParquetConfig { label_column: Some("fine_label".into()), ..Default::default() };
    let err = parquet::ParquetDataset::open(&d.join("test-00000-of-00001.parquet"), cfg).err().unwrap().to_string();
    assert!(err.contains("fine_label"), "{err}");
    let err = parquet::ParquetDataset::open_split(dir.path(), Split::Unlabeled, Default::default()).err().unwrap().to_string();
    assert!(err.contains("Unlabeled"), "{err}");
}

#[test]
fn builtin_is_deterministic_balanced_and_distinct() {
    let cfg = data::BuiltinConfig { seed: 3, train_size: 40, test_size: 20, size: 32 };
    let a = data::BuiltinShapes::new(cfg, Split::Train);
    let b = data::BuiltinShapes::new(cfg, Split::Train);
    let t = data::BuiltinShapes::new(cfg, Split::Test);
    assert_eq!(a.image(7).unwrap(), b.image(7).unwrap());
    assert_ne!(a.image(7).unwrap(), t.image(7).unwrap());
    assert_ne!(a.image(7).unwrap(), data::BuiltinShapes::new(data::BuiltinConfig { seed: 4, ..cfg }, Split::Train).image(7).unwrap());
    let counts = (0..40).fold([0; 10], |mut c, i| {
        c[a.label(i).unwrap()] += 1;
        c
    });
    assert!(counts.iter().all(|&c| c == 4));
    assert_eq!(a.classes().len(), 10);
    assert_eq!(a.image(0).unwrap().dimensions(), (32, 32));
}

#[test]
fn data_stats_match_a_direct_computation() {
    let cfg = data::BuiltinConfig { seed: 1, train_size: 12, test_size: 2, size: 16 };
    let ds = data::BuiltinShapes::new(cfg, Split::Train);
    let s = data::stats::compute(&ds).unwrap();
    let mut sum = [0f64; 3];
    let mut sq = [0f64; 3];
    let mut n = 0f64;
    for i in 0..12 {
        for p in ds.image(i).unwrap().pixels() {
            for c in 0..3 {
                let v = p[c] as f64 / 255.0;
                sum[c] += v;
                sq[c] += v * v;
            }
            n += 1.0;
        }
    }
    for c in 0..3 {
        let m = sum[c] / n;
        assert!((s.mean[c] - m).abs() < 1e-9);
        assert!((s.std[c] - (sq[c] / n - m * m).sqrt()).abs() < 1e-9);
    }
    assert_eq!((s.images, s.classes), (12, 10));
}

// ------------------------------------------------------------------ augmentations

fn reference() -> serde_json::Value {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/pil_reference.json");
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn img_of(v: &serde_json::Value, w: u32, h: u32) -> RgbImage {
    let px: Vec<u8> = v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u8).collect();
    RgbImage::from_raw(w, h, px).unwrap()
}

/// Our ops against torchvision/PIL outputs (scripts/make_pil_fixtures.py): exact, or within one
/// grey level where PIL's float rounding can differ by an ulp.
#[test]
fn augmentations_match_pil_and_torchvision() {
    let r = reference();
    let src = img_of(&r["source"], 17, 13);
    let mut checked = 0;
    for c in r["cases"].as_array().unwrap() {
        let name = c["name"].as_str().unwrap();
        let p = &c["params"];
        let f = |k: &str| p[k].as_f64().unwrap();
        let u = |k: &str| p[k].as_u64().unwrap() as usize;
        let ours = match name {
            "resize_bilinear" => augment::resize(&src, u("height"), u("width"), Interp::Bilinear),
            "resize_bicubic" => augment::resize(&src, u("height"), u("width"), Interp::Bicubic),
            "resized_crop_bilinear" | "resized_crop_bicubic" => {
                let i = if name.ends_with("bilinear") { Interp::Bilinear } else { Interp::Bicubic };
                augment::resize(&augment::crop(&src, u("top"), u("left"), u("height"), u("width")), u("size"), u("size"), i)
            }
            "resize_shorter" => Transform::new(vec![Op::Resize { size: u("size"), interp: Interp::Bicubic }], augment::norm::CIFAR)
                .augment(&src, &mut ChaCha8Rng::seed_from_u64(0)),
            "center_crop" => augment::center_crop(&src, u("size")),
            "brightness" => augment::adjust_brightness(src.clone(), f("factor") as f32),
            "contrast" => augment::adjust_contrast(src.clone(), f("factor") as f32),
            "saturation" => augment::adjust_saturation(src.clone(), f("factor") as f32),
            "hue" => augment::adjust_hue(src.clone(), f("factor") as f32),
            "grayscale" => augment::grayscale(&src),
            "hflip" => image::imageops::flip_horizontal(&src),
            "gaussian_blur" => augment::gaussian_blur(&src, f("sigma") as f32),
            "solarize" => augment::solarize(src.clone(), 128),
            other => panic!("unknown case {other}"),
        };
        let want = img_of(&c["pixels"], c["width"].as_u64().unwrap() as u32, c["height"].as_u64().unwrap() as u32);
        assert_eq!(ours.dimensions(), want.dimensions(), "{name} {p}");
        let max = ours.iter().zip(want.iter()).map(|(a, b)| (*a as i32 - *b as i32).abs()).max().unwrap();
        let tol = if name == "gaussian_blur" { 1 } else { 0 };
        assert!(max <= tol, "{name} {p}: max difference {max}");
        checked += 1;
    }
    assert_eq!(checked, 29);
}

#[test]
fn random_resized_crop_statistics() {
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let (h, w) = (32usize, 32usize);
    let n = 20_000;
    let mut area = 0.0;
    let mut fallback = 0;
    for _ in 0..n {
        let (i, j, ch, cw) = augment::rrc_params(h, w, (0.08, 1.0), (0.75, 4.0 / 3.0), &mut rng);
        assert!(i + ch <= h && j + cw <= w && ch > 0 && cw > 0);
        let a = (ch * cw) as f64 / (h * w) as f64;
        let ratio = cw as f64 / ch as f64;
        if (ch, cw) == (h, w) {
            fallback += 1;
        } else {
            // Rounding to whole pixels widens the bounds slightly on a 32×32 image.
            assert!(a >= 0.05 && a <= 1.0, "area {a}");
            assert!(ratio >= 0.6 && ratio <= 1.7, "ratio {ratio}");
        }
        area += a;
    }
    // E[area] for U(0.08, 1) without rejection is 0.54; rejections of too-wide crops lower it.
    let mean = area / n as f64;
    assert!(mean > 0.4 && mean < 0.56, "mean area fraction {mean}");
    assert!(fallback < n / 50, "fallbacks {fallback}");
    // A very elongated image falls back to the central crop of the allowed ratio.
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let (i, j, ch, cw) = augment::rrc_params(10, 200, (0.99, 1.0), (0.75, 4.0 / 3.0), &mut rng);
    assert_eq!((ch, cw), (10, 13));
    assert_eq!((i, j), (0, (200 - 13) / 2));
}

#[test]
fn flip_rate_jitter_identity_grayscale_and_hue() {
    let img = synthetic(16, 16, 9);
    let flip = Transform::new(vec![Op::RandomHorizontalFlip { p: 0.5 }], augment::norm::CIFAR);
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let flipped = (0..4000).filter(|_| flip.augment(&img, &mut rng) != img).count();
    assert!((flipped as f64 / 4000.0 - 0.5).abs() < 0.03, "flip rate {flipped}/4000");
    // ColorJitter at zero strength is the identity (always applied, p = 1).
    let zero = Transform::new(vec![Op::ColorJitter { p: 1.0, brightness: 0.0, contrast: 0.0, saturation: 0.0, hue: 0.0 }], augment::norm::CIFAR);
    assert_eq!(zero.augment(&img, &mut rng), img);
    // Grayscale: PIL's L = round((19595 R + 38470 G + 7471 B) / 65536) on every pixel, 3 equal channels.
    let g = augment::grayscale(&img);
    for (p, q) in img.pixels().zip(g.pixels()) {
        let l = ((19595.0 * p[0] as f64 + 38470.0 * p[1] as f64 + 7471.0 * p[2] as f64) / 65536.0).round() as u8;
        assert_eq!(q.0, [l, l, l]);
    }
    // Hue shifts round-trip (up to PIL's 8-bit HSV quantisation).
    let back = augment::adjust_hue(augment::adjust_hue(img.clone(), 0.1), -0.1);
    let base = augment::adjust_hue(img.clone(), 0.0);
    let max = back.iter().zip(base.iter()).map(|(a, b)| (*a as i32 - *b as i32).abs()).max().unwrap();
    assert!(max <= 8, "hue round trip differs by {max}");
    // Grey pixels have no hue: any shift leaves them unchanged.
    let grey = RgbImage::from_pixel(4, 4, Rgb([90, 90, 90]));
    assert_eq!(augment::adjust_hue(grey.clone(), 0.3), grey);
}

#[test]
fn presets_have_the_original_order_and_sizes() {
    let t = Transform::cifar_train();
    assert!(matches!(t.ops[0], Op::RandomResizedCrop { size: 32, interp: Interp::Bilinear, .. }));
    assert!(matches!(t.ops[3], Op::RandomGrayscale { p } if p == 0.2));
    let tiny = Transform::tiny_train();
    assert!(matches!(tiny.ops[0], Op::ColorJitter { .. }));
    assert!(matches!(tiny.ops[2], Op::RandomResizedCrop { size: 64, interp: Interp::Bicubic, .. }));
    assert_eq!(Transform::stl_eval().output_size(96, 96), (64, 64));
    assert_eq!(Transform::imagenet_eval().output_size(375, 500), (224, 224));
    let v2 = Transform::imagenet_view2();
    assert!(v2.ops.iter().any(|o| matches!(o, Op::Solarize { p, .. } if *p == 0.2)));
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let out = Transform::stl_train().augment(&synthetic(96, 96, 1), &mut rng);
    assert_eq!(out.dimensions(), (64, 64));
    // ToTensor + Normalize.
    let img = RgbImage::from_pixel(2, 1, Rgb([255, 0, 128]));
    let mut buf = vec![0f32; 6];
    Transform::cifar_eval().to_tensor_into(&img, &mut buf);
    assert!((buf[0] - (1.0 - 0.4914) / 0.2023).abs() < 1e-6);
    assert!((buf[2] - (0.0 - 0.4822) / 0.1994).abs() < 1e-6);
    assert!((buf[4] - (128.0 / 255.0 - 0.4465) / 0.2010).abs() < 1e-6);
}

// ------------------------------------------------------------------ loader

fn builtin(n: usize) -> DynDataset {
    Arc::new(data::BuiltinShapes::new(data::BuiltinConfig { seed: 0, train_size: n, test_size: 4, size: 32 }, Split::Train))
}

#[test]
fn loader_is_deterministic_whatever_the_thread_count() {
    let dev = candle_core::Device::Cpu;
    let run = |workers: usize| {
        let lc = LoaderConfig { batch_size: 8, shuffle: true, drop_last: true, seed: 11, workers, prefetch: 2 };
        let l = Loader::pairs(builtin(30), Transform::cifar_train(), lc, &dev).unwrap();
        assert_eq!(l.batches_per_epoch(), 3);
        let mut out = vec![];
        for e in 0..2 {
            for b in l.pair_epoch(e, 0) {
                let b = b.unwrap();
                assert_eq!(b.view_a.dims(), [8, 3, 32, 32]);
                out.push((b.indices.clone(), b.view_a.flatten_all().unwrap().to_vec1::<f32>().unwrap(), b.view_b.flatten_all().unwrap().to_vec1::<f32>().unwrap()));
            }
        }
        out
    };
    let one = run(1);
    let two = run(2);
    let four = run(4);
    assert_eq!(one, two);
    assert_eq!(one, four);
    // Views differ from each other; epochs are shuffled differently; starting mid-epoch gives the same batch.
    assert_ne!(one[0].1, one[0].2);
    assert_ne!(one[0].0, one[3].0);
    let lc = LoaderConfig { batch_size: 8, shuffle: true, drop_last: true, seed: 11, workers: 2, prefetch: 2 };
    let l = Loader::pairs(builtin(30), Transform::cifar_train(), lc, &dev).unwrap();
    let b = l.pair_epoch(1, 2).next().unwrap().unwrap();
    assert_eq!(b.indices, one[5].0);
    assert_eq!(b.view_a.flatten_all().unwrap().to_vec1::<f32>().unwrap(), one[5].1);
}

#[test]
fn loader_drop_last_and_errors() {
    let dev = candle_core::Device::Cpu;
    let lc = LoaderConfig { batch_size: 8, shuffle: false, drop_last: false, seed: 0, workers: 1, prefetch: 1 };
    let l = Loader::single(builtin(20), Transform::cifar_eval(), lc.clone(), &dev).unwrap();
    let sizes: Vec<usize> = l.epoch(0, 0).map(|b| b.unwrap().images.dim(0).unwrap()).collect();
    assert_eq!(sizes, vec![8, 8, 4]);
    let err = Loader::single(builtin(5), Transform::cifar_eval(), LoaderConfig { drop_last: true, ..lc }, &dev).err().unwrap().to_string();
    assert!(err.contains("fewer than one batch"), "{err}");
}

#[test]
fn parquet_labels_are_checked_before_class_names_are_built() {
    use mixbt::polars::prelude::Column;
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("train-00000-of-00001.parquet");
    let ims = vec![synthetic(4, 4, 1), synthetic(4, 4, 2)];
    // A label of 2^40 (the OOM of issue 17): an error naming the file, row and value, at once.
    fixtures::write_hf_parquet(&p, "img", &[(ims[0].clone(), 0), (ims[1].clone(), 1 << 40)], None).unwrap();
    let t0 = std::time::Instant::now();
    let err = parquet::ParquetDataset::open(&p, Default::default()).err().unwrap().to_string();
    assert!(err.contains("train-00000-of-00001.parquet") && err.contains("row 1") && err.contains("1099511627776"), "{err}");
    assert!(t0.elapsed() < std::time::Duration::from_secs(5));
    // Beyond the class names the file declares.
    let names = vec!["a".to_string(), "b".to_string()];
    fixtures::write_hf_parquet(&p, "img", &[(ims[0].clone(), 0), (ims[1].clone(), 2)], Some(&names)).unwrap();
    let err = parquet::ParquetDataset::open(&p, Default::default()).err().unwrap().to_string();
    assert!(err.contains("row 1") && err.contains("is 2") && err.contains("2 classes"), "{err}");
    // String labels are named as such (not "null or negative").
    let label = Column::new("label".into(), ["cat", "dog"]);
    fixtures::write_hf_parquet_with(&p, "img", &ims, Some(label), None).unwrap();
    let err = parquet::ParquetDataset::open(&p, Default::default()).err().unwrap().to_string();
    assert!(err.contains("not integers") && err.contains("str"), "{err}");
    // Nulls and negatives.
    let label = Column::new("label".into(), [Some(1i64), None]);
    fixtures::write_hf_parquet_with(&p, "img", &ims, Some(label), None).unwrap();
    let err = parquet::ParquetDataset::open(&p, Default::default()).err().unwrap().to_string();
    assert!(err.contains("row 1") && err.contains("null"), "{err}");
    let label = Column::new("label".into(), [0i64, -3]);
    fixtures::write_hf_parquet_with(&p, "img", &ims, Some(label), None).unwrap();
    let err = parquet::ParquetDataset::open(&p, Default::default()).err().unwrap().to_string();
    assert!(err.contains("row 1") && err.contains("-3"), "{err}");
}

#[test]
fn subsets_are_stratified_and_a_missing_test_split_is_an_error() {
    // The built-in labels are i % 10: an evenly spaced subset with a stride of 10 is one class.
    let cfg = data::DataConfig { test_subset: Some(100), builtin: Some(data::BuiltinConfig { test_size: 1000, ..Default::default() }), ..data::DataConfig::for_kind(DatasetKind::Builtin) };
    let ds = data::open(&cfg, Split::Test).unwrap();
    assert_eq!(ds.len(), 100);
    let mut per_class = [0usize; 10];
    for i in 0..ds.len() {
        per_class[ds.label(i).unwrap()] += 1;
    }
    assert_eq!(per_class, [10; 10], "every class keeps its share");
    let even = data::Subset::even(data::open(&data::DataConfig { test_subset: None, ..cfg.clone() }, Split::Test).unwrap(), 100);
    assert!((0..100).all(|i| even.label(i) == even.label(0)), "the old even subset really was one class");
    // An image folder with train/ but no test/ or val/.
    let dir = tempfile::tempdir().unwrap();
    write_png(&dir.path().join("train/cat/a.png"), &synthetic(8, 8, 1));
    write_png(&dir.path().join("train/dog/b.png"), &synthetic(8, 8, 2));
    let cfg = data::DataConfig { dir: Some(dir.path().into()), ..data::DataConfig::for_kind(DatasetKind::ImageFolder) };
    assert_eq!(data::open(&cfg, Split::Train).unwrap().classes(), ["cat", "dog"]);
    let err = data::open(&cfg, Split::Test).err().unwrap().to_string();
    assert!(err.contains(&dir.path().display().to_string()) && err.contains("no test split"), "{err}");
    write_png(&dir.path().join("test/cat/c.png"), &synthetic(8, 8, 3));
    assert_eq!(data::open(&cfg, Split::Test).unwrap().len(), 1);
}

#[test]
fn folder_link_loops_are_walked_once() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("train");
    write_png(&root.join("cat/a.png"), &synthetic(8, 8, 1));
    write_png(&root.join("dog/b.png"), &synthetic(8, 8, 2));
    std::os::unix::fs::symlink("..", root.join("cat/loop")).unwrap();
    std::os::unix::fs::symlink(".", root.join("dog/self")).unwrap();
    let f = mixbt::data::ImageFolder::open(&root, Default::default()).unwrap();
    assert_eq!(f.len(), 2, "{:?}", f.files());
}
