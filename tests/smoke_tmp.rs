use candle_core::{Device, Tensor};
use diffusion_samplers::*;
use diffusion_samplers::testing::GaussianMixture;

#[test]
fn smoke() {
    let gm = GaussianMixture::example(4, 3, 1).unwrap();
    for sched in [Box::new(DiscreteVp::linear(1e-4, 0.02, 1000).unwrap()) as Box<dyn Scheduler>, Box::new(ContinuousVp::default())] {
        let noise = Tensor::new(SeededNoise::new(3).normal_vec(64), &Device::Cpu).unwrap().reshape((16, 4)).unwrap();
        for n in [10usize, 20, 40, 80, 160] {
            let grid = Grid::new(sched.as_ref(), &Spacing::UniformLambda, n, End::Min).unwrap();
            let exact = gm.exact_endpoint(&noise, &grid.points()[0], grid.points().last().unwrap()).unwrap();
            let mut errs = vec![];
            for (name, s) in [("ddim", 0usize), ("2m", 1), ("3m", 2), ("heun", 3), ("euler", 4), ("dpm2", 5), ("dpm3", 6)] {
                let mut model = Model::new(gm.denoiser(sched.as_ref(), Prediction::Epsilon), sched.as_ref(), Prediction::Epsilon);
                let x = match s {
                    0 => sample(&Ddim::default(), &mut model, &grid, &noise),
                    1 => sample(&DpmSolverMultistep::pp(2), &mut model, &grid, &noise),
                    2 => sample(&DpmSolverMultistep::pp(3), &mut model, &grid, &noise),
                    3 => sample(&Heun::default(), &mut model, &grid, &noise),
                    4 => sample(&Euler, &mut model, &grid, &noise),
                    5 => sample(&DpmSolverMultistep::noise(2), &mut model, &grid, &noise),
                    _ => sample(&DpmSolverMultistep::noise(3), &mut model, &grid, &noise),
                }.unwrap();
                let e = (x - &exact).unwrap().sqr().unwrap().mean_all().unwrap().sqrt().unwrap().to_scalar::<f64>().unwrap();
                errs.push(format!("{name}={e:.3e}"));
            }
            println!("{:?} n={n}: {}", sched, errs.join(" "));
        }
    }
}
