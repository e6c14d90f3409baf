//! Write a grid of built-in images (10 classes × 8) as PNG: `cargo run --example builtin_grid out.png`.
fn main() {
    use mixbt::data::Dataset;
    let ds = mixbt::data::BuiltinShapes::new(Default::default(), mixbt::data::Split::Train);
    let mut grid = image::RgbImage::new(10 * 34, 8 * 34);
    for c in 0..10 {
        for r in 0..8 {
            let im = ds.image(r * 10 + c).unwrap();
            image::imageops::replace(&mut grid, &im, (c * 34) as i64, (r * 34) as i64);
        }
    }
    let out = std::env::args().nth(1).unwrap_or_else(|| "builtin.png".into());
    let big = image::imageops::resize(&grid, grid.width() * 2, grid.height() * 2, image::imageops::FilterType::Nearest);
    big.save(out).unwrap();
}
