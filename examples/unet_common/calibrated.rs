//! Calibrated schedule files for the UNet examples (`calibrate` writes them; `mnist` and
//! `compare` load them with `--schedule FILE`).

use std::path::Path;

use diffusion_samplers::calibrate::{Expect, ScheduleFile};
use diffusion_samplers::{AnySolver, DiscreteVp, Grid, Planned};

use super::AnyResult;

/// The model identifier written into and checked against schedule files: the folder's name and
/// a hash (64-bit FNV-1a) of its weights file, so a file made for other weights is refused.
pub fn model_id(dir: &Path) -> AnyResult<String> {
    let weights = dir.join("diffusion_pytorch_model.safetensors");
    let bytes = std::fs::read(&weights).map_err(|e| format!("{}: {e}", weights.display()))?;
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "model".into());
    Ok(format!("{name}@fnv1a64:{h:016x}"))
}

/// A schedule file checked against the model in `dir` and `schedule`: its solver (the file's own,
/// or `solver` when given, which must then be the file's), its grid, and the file.
pub fn load_schedule(
    path: &str,
    dir: &Path,
    schedule: &DiscreteVp,
    solver: Option<&AnySolver>,
) -> AnyResult<(AnySolver, Grid, ScheduleFile)> {
    let file = ScheduleFile::load(path)?;
    let model = model_id(dir)?;
    let name = match solver {
        Some(s) => s.to_string(),
        None => file.solver.clone(),
    };
    let grid = file.grid_at(&Expect { model: &model, schedule, solver: &name }, path)?;
    let solver = match (&file.plan, name.as_str()) {
        (Some(plan), "planned") => AnySolver::new(Planned { plan: plan.clone() }),
        _ => name.parse()?,
    };
    Ok((solver, grid, file))
}

/// CPU seconds (user + system, all threads) this process has used so far, from `/proc/self/stat`
/// (Linux; `None` elsewhere). On a shared machine this, not the wall clock, is the cost.
pub fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // the fields after the command name (which is in parentheses and may hold spaces)
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name
    let ticks = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0) // USER_HZ, 100 on Linux
}
