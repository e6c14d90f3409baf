//! Diagnostics: k-NN of a run's model with eval-mode BN vs batch statistics.
use candle_core::{Device, ModuleT, Tensor};
use mixbt::data::{Dataset, Split};
fn main() -> mixbt::Result<()> {
    let path = std::env::args().nth(1).unwrap();
    let (enc, store, _) = mixbt::ckpt::load_encoder(std::path::Path::new(&path), &Device::Cpu)?;
    for n in ["f.1.running_mean", "f.1.running_var", "f.6.1.bn2.running_var", "g.1.running_var"] {
        let v: Vec<f32> = store.get(n).unwrap().as_tensor().flatten_all()?.to_vec1()?;
        println!("{n}: {:?}", &v[..4.min(v.len())]);
    }
    let cfg = mixbt::data::BuiltinConfig { seed: 0, train_size: 6000, test_size: 1000, size: 32 };
    let tr = mixbt::data::BuiltinShapes::new(cfg, Split::Train);
    let te = mixbt::data::BuiltinShapes::new(cfg, Split::Test);
    let t = mixbt::data::Transform::cifar_eval();
    let emb = |ds: &dyn Dataset, n: usize, train: bool| -> mixbt::Result<(Tensor, Vec<usize>)> {
        let mut feats = vec![];
        let mut labels = vec![];
        for s in (0..n).step_by(250) {
            let mut buf = vec![];
            for i in s..(s + 250).min(n) {
                let mut b = vec![0f32; 3 * 32 * 32];
                t.to_tensor_into(&ds.image(i)?, &mut b);
                buf.extend(b);
                labels.push(ds.label(i).unwrap());
            }
            let x = Tensor::from_vec(buf, ((s + 250).min(n) - s, 3, 32, 32), &Device::Cpu)?;
            let f = enc.backbone.forward_t(&x, train)?;
            feats.push(mixbt::model::l2_normalize(&f)?);
        }
        Ok((Tensor::cat(&feats, 0)?, labels))
    };
    for train in [false, true] {
        let (bf, bl) = emb(&tr, 3000, train)?;
        let (tf, tl) = emb(&te, 1000, train)?;
        let bank = mixbt::eval::Features { features: bf, labels: bl, num_classes: 10 };
        let test = mixbt::eval::Features { features: tf, labels: tl, num_classes: 10 };
        let r = mixbt::eval::knn_accuracy(&bank, &test, &Default::default())?;
        println!("batch-stat BN: {train}: top1 {:.2} top5 {:.2}", r.top1, r.top5);
    }
    Ok(())
}
