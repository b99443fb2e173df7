//! The diffusers scheduler classes this layer reproduces and the options each one's constructor
//! takes (diffusers 0.42.1).

/// The diffusers scheduler classes this layer reproduces. (The default, DDIM, is the class of
/// an empty [`super::SchedulerConfig`].)
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum SchedulerClass {
    /// `DDIMScheduler`.
    #[default]
    Ddim,
    /// `DDIMInverseScheduler` (deterministic encoding).
    DdimInverse,
    /// `DPMSolverMultistepScheduler`.
    DpmSolverMultistep,
    /// `DPMSolverMultistepInverseScheduler` (deterministic encoding).
    DpmSolverMultistepInverse,
    /// `DPMSolverSinglestepScheduler`.
    DpmSolverSinglestep,
    /// `DEISMultistepScheduler`.
    DeisMultistep,
    /// `UniPCMultistepScheduler`.
    UniPcMultistep,
    /// `EulerDiscreteScheduler`.
    EulerDiscrete,
    /// `HeunDiscreteScheduler`.
    HeunDiscrete,
    /// `LMSDiscreteScheduler`.
    LmsDiscrete,
    /// `PNDMScheduler`.
    Pndm,
    /// `EulerAncestralDiscreteScheduler`.
    EulerAncestralDiscrete,
    /// `DDPMScheduler`.
    Ddpm,
    /// `FlowMatchEulerDiscreteScheduler`.
    FlowMatchEulerDiscrete,
    /// `KDPM2DiscreteScheduler` (k-diffusion's DPM-2).
    KDpm2Discrete,
    /// `KDPM2AncestralDiscreteScheduler` (k-diffusion's DPM-2 ancestral).
    KDpm2AncestralDiscrete,
    /// `DPMSolverSDEScheduler` (k-diffusion's DPM-Solver++ SDE).
    DpmSolverSde,
    /// `EDMEulerScheduler` (EDM's preconditioned network, Euler steps).
    EdmEuler,
    /// `EDMDPMSolverMultistepScheduler` (EDM's preconditioned network, DPM-Solver++).
    EdmDpmSolverMultistep,
    /// `LCMScheduler` (multistep latent-consistency sampling).
    Lcm,
    /// `TCDScheduler` (trajectory-consistency distillation, strategic stochastic sampling).
    Tcd,
    /// `SASolverScheduler` (SA-Solver predictor-corrector).
    SaSolver,
    /// `IPNDMScheduler` (iPNDM on its own cosine grid, v-prediction).
    Ipndm,
    /// `FlowMatchHeunDiscreteScheduler`.
    FlowMatchHeunDiscrete,
    /// `CosineDPMSolverMultistepScheduler` (SDE-DPM-Solver++ with EDM preconditioning, Stable Audio).
    CosineDpmSolverMultistep,
}

const COMMON_DISCRETE: &[&str] = &["num_train_timesteps", "beta_start", "beta_end", "beta_schedule", "trained_betas"];

impl SchedulerClass {
    /// Every class, in a fixed order.
    pub const ALL: [SchedulerClass; 25] = [
        SchedulerClass::Ddim,
        SchedulerClass::DdimInverse,
        SchedulerClass::DpmSolverMultistep,
        SchedulerClass::DpmSolverMultistepInverse,
        SchedulerClass::DpmSolverSinglestep,
        SchedulerClass::DeisMultistep,
        SchedulerClass::UniPcMultistep,
        SchedulerClass::EulerDiscrete,
        SchedulerClass::HeunDiscrete,
        SchedulerClass::LmsDiscrete,
        SchedulerClass::Pndm,
        SchedulerClass::EulerAncestralDiscrete,
        SchedulerClass::Ddpm,
        SchedulerClass::FlowMatchEulerDiscrete,
        SchedulerClass::KDpm2Discrete,
        SchedulerClass::KDpm2AncestralDiscrete,
        SchedulerClass::DpmSolverSde,
        SchedulerClass::EdmEuler,
        SchedulerClass::EdmDpmSolverMultistep,
        SchedulerClass::Lcm,
        SchedulerClass::Tcd,
        SchedulerClass::SaSolver,
        SchedulerClass::Ipndm,
        SchedulerClass::FlowMatchHeunDiscrete,
        SchedulerClass::CosineDpmSolverMultistep,
    ];

    /// The diffusers class name (`_class_name`).
    ///
    /// ```
    /// use diffusion_samplers::diffusers::SchedulerClass;
    /// assert_eq!(SchedulerClass::from_name("PNDMScheduler"), Some(SchedulerClass::Pndm));
    /// assert_eq!(SchedulerClass::Pndm.name(), "PNDMScheduler");
    /// ```
    pub fn name(self) -> &'static str {
        match self {
            SchedulerClass::Ddim => "DDIMScheduler",
            SchedulerClass::DdimInverse => "DDIMInverseScheduler",
            SchedulerClass::DpmSolverMultistep => "DPMSolverMultistepScheduler",
            SchedulerClass::DpmSolverMultistepInverse => "DPMSolverMultistepInverseScheduler",
            SchedulerClass::DpmSolverSinglestep => "DPMSolverSinglestepScheduler",
            SchedulerClass::DeisMultistep => "DEISMultistepScheduler",
            SchedulerClass::UniPcMultistep => "UniPCMultistepScheduler",
            SchedulerClass::EulerDiscrete => "EulerDiscreteScheduler",
            SchedulerClass::HeunDiscrete => "HeunDiscreteScheduler",
            SchedulerClass::LmsDiscrete => "LMSDiscreteScheduler",
            SchedulerClass::Pndm => "PNDMScheduler",
            SchedulerClass::EulerAncestralDiscrete => "EulerAncestralDiscreteScheduler",
            SchedulerClass::Ddpm => "DDPMScheduler",
            SchedulerClass::FlowMatchEulerDiscrete => "FlowMatchEulerDiscreteScheduler",
            SchedulerClass::KDpm2Discrete => "KDPM2DiscreteScheduler",
            SchedulerClass::KDpm2AncestralDiscrete => "KDPM2AncestralDiscreteScheduler",
            SchedulerClass::DpmSolverSde => "DPMSolverSDEScheduler",
            SchedulerClass::EdmEuler => "EDMEulerScheduler",
            SchedulerClass::EdmDpmSolverMultistep => "EDMDPMSolverMultistepScheduler",
            SchedulerClass::Lcm => "LCMScheduler",
            SchedulerClass::Tcd => "TCDScheduler",
            SchedulerClass::SaSolver => "SASolverScheduler",
            SchedulerClass::Ipndm => "IPNDMScheduler",
            SchedulerClass::FlowMatchHeunDiscrete => "FlowMatchHeunDiscreteScheduler",
            SchedulerClass::CosineDpmSolverMultistep => "CosineDPMSolverMultistepScheduler",
        }
    }

    /// The class with diffusers name `name`.
    pub fn from_name(name: &str) -> Option<SchedulerClass> {
        SchedulerClass::ALL.into_iter().find(|c| c.name() == name)
    }

    /// The options this class's constructor accepts (diffusers 0.42.1). Other known diffusers
    /// options in a config are ignored for this class, exactly as diffusers ignores them.
    pub fn keys(self) -> Vec<&'static str> {
        let own: &[&str] = match self {
            SchedulerClass::Ddim => &[
                "clip_sample",
                "set_alpha_to_one",
                "steps_offset",
                "prediction_type",
                "thresholding",
                "dynamic_thresholding_ratio",
                "clip_sample_range",
                "sample_max_value",
                "timestep_spacing",
                "rescale_betas_zero_snr",
            ],
            SchedulerClass::DdimInverse => &[
                "clip_sample",
                "set_alpha_to_one",
                "set_alpha_to_zero",
                "steps_offset",
                "prediction_type",
                "clip_sample_range",
                "timestep_spacing",
                "rescale_betas_zero_snr",
            ],
            SchedulerClass::DpmSolverMultistep => &[
                "solver_order",
                "prediction_type",
                "thresholding",
                "dynamic_thresholding_ratio",
                "sample_max_value",
                "algorithm_type",
                "solver_type",
                "lower_order_final",
                "euler_at_final",
                "use_karras_sigmas",
                "use_exponential_sigmas",
                "use_beta_sigmas",
                "use_lu_lambdas",
                "use_flow_sigmas",
                "flow_shift",
                "final_sigmas_type",
                "lambda_min_clipped",
                "variance_type",
                "timestep_spacing",
                "steps_offset",
                "rescale_betas_zero_snr",
                "use_dynamic_shifting",
                "time_shift_type",
            ],
            SchedulerClass::DpmSolverMultistepInverse => &[
                "solver_order",
                "prediction_type",
                "thresholding",
                "dynamic_thresholding_ratio",
                "sample_max_value",
                "algorithm_type",
                "solver_type",
                "lower_order_final",
                "euler_at_final",
                "use_karras_sigmas",
                "use_exponential_sigmas",
                "use_beta_sigmas",
                "use_flow_sigmas",
                "flow_shift",
                "lambda_min_clipped",
                "variance_type",
                "timestep_spacing",
                "steps_offset",
            ],
            SchedulerClass::DpmSolverSinglestep => &[
                "solver_order",
                "prediction_type",
                "thresholding",
                "dynamic_thresholding_ratio",
                "sample_max_value",
                "algorithm_type",
                "solver_type",
                "lower_order_final",
                "use_karras_sigmas",
                "use_exponential_sigmas",
                "use_beta_sigmas",
                "use_flow_sigmas",
                "flow_shift",
                "final_sigmas_type",
                "lambda_min_clipped",
                "variance_type",
                "use_dynamic_shifting",
                "time_shift_type",
            ],
            SchedulerClass::DeisMultistep => &[
                "solver_order",
                "prediction_type",
                "thresholding",
                "dynamic_thresholding_ratio",
                "sample_max_value",
                "algorithm_type",
                "solver_type",
                "lower_order_final",
                "use_karras_sigmas",
                "use_exponential_sigmas",
                "use_beta_sigmas",
                "use_flow_sigmas",
                "flow_shift",
                "timestep_spacing",
                "steps_offset",
                "use_dynamic_shifting",
                "time_shift_type",
            ],
            SchedulerClass::UniPcMultistep => &[
                "solver_order",
                "prediction_type",
                "thresholding",
                "dynamic_thresholding_ratio",
                "sample_max_value",
                "predict_x0",
                "solver_type",
                "lower_order_final",
                "disable_corrector",
                "solver_p",
                "use_karras_sigmas",
                "use_exponential_sigmas",
                "use_beta_sigmas",
                "use_flow_sigmas",
                "flow_shift",
                "timestep_spacing",
                "steps_offset",
                "final_sigmas_type",
                "rescale_betas_zero_snr",
                "use_dynamic_shifting",
                "time_shift_type",
                "sigma_min",
                "sigma_max",
                "shift_terminal",
            ],
            SchedulerClass::EulerDiscrete => &[
                "prediction_type",
                "interpolation_type",
                "use_karras_sigmas",
                "use_exponential_sigmas",
                "use_beta_sigmas",
                "sigma_min",
                "sigma_max",
                "timestep_spacing",
                "timestep_type",
                "steps_offset",
                "rescale_betas_zero_snr",
                "final_sigmas_type",
            ],
            SchedulerClass::HeunDiscrete => &[
                "prediction_type",
                "use_karras_sigmas",
                "use_exponential_sigmas",
                "use_beta_sigmas",
                "clip_sample",
                "clip_sample_range",
                "timestep_spacing",
                "steps_offset",
            ],
            SchedulerClass::LmsDiscrete => &[
                "use_karras_sigmas",
                "use_exponential_sigmas",
                "use_beta_sigmas",
                "prediction_type",
                "timestep_spacing",
                "steps_offset",
            ],
            SchedulerClass::Pndm => {
                &["skip_prk_steps", "set_alpha_to_one", "prediction_type", "timestep_spacing", "steps_offset"]
            }
            SchedulerClass::EulerAncestralDiscrete => {
                &["prediction_type", "timestep_spacing", "steps_offset", "rescale_betas_zero_snr"]
            }
            SchedulerClass::Ddpm => &[
                "variance_type",
                "clip_sample",
                "prediction_type",
                "thresholding",
                "dynamic_thresholding_ratio",
                "clip_sample_range",
                "sample_max_value",
                "timestep_spacing",
                "steps_offset",
                "rescale_betas_zero_snr",
            ],
            SchedulerClass::FlowMatchEulerDiscrete => &[
                "num_train_timesteps",
                "shift",
                "use_dynamic_shifting",
                "base_shift",
                "max_shift",
                "base_image_seq_len",
                "max_image_seq_len",
                "invert_sigmas",
                "shift_terminal",
                "use_karras_sigmas",
                "use_exponential_sigmas",
                "use_beta_sigmas",
                "time_shift_type",
                "stochastic_sampling",
            ],
            SchedulerClass::KDpm2Discrete | SchedulerClass::KDpm2AncestralDiscrete => &[
                "use_karras_sigmas",
                "use_exponential_sigmas",
                "use_beta_sigmas",
                "prediction_type",
                "timestep_spacing",
                "steps_offset",
            ],
            SchedulerClass::DpmSolverSde => &[
                "prediction_type",
                "use_karras_sigmas",
                "use_exponential_sigmas",
                "use_beta_sigmas",
                "noise_sampler_seed",
                "timestep_spacing",
                "steps_offset",
            ],
            SchedulerClass::EdmEuler => &[
                "sigma_min",
                "sigma_max",
                "sigma_data",
                "sigma_schedule",
                "num_train_timesteps",
                "prediction_type",
                "rho",
                "final_sigmas_type",
            ],
            SchedulerClass::EdmDpmSolverMultistep => &[
                "sigma_min",
                "sigma_max",
                "sigma_data",
                "sigma_schedule",
                "num_train_timesteps",
                "prediction_type",
                "rho",
                "solver_order",
                "thresholding",
                "dynamic_thresholding_ratio",
                "sample_max_value",
                "algorithm_type",
                "solver_type",
                "lower_order_final",
                "euler_at_final",
                "final_sigmas_type",
            ],
            SchedulerClass::Lcm | SchedulerClass::Tcd => &[
                "original_inference_steps",
                "clip_sample",
                "clip_sample_range",
                "set_alpha_to_one",
                "steps_offset",
                "prediction_type",
                "thresholding",
                "dynamic_thresholding_ratio",
                "sample_max_value",
                "timestep_spacing",
                "timestep_scaling",
                "rescale_betas_zero_snr",
            ],
            SchedulerClass::SaSolver => &[
                "predictor_order",
                "corrector_order",
                "prediction_type",
                "tau_func",
                "thresholding",
                "dynamic_thresholding_ratio",
                "sample_max_value",
                "algorithm_type",
                "lower_order_final",
                "use_karras_sigmas",
                "use_exponential_sigmas",
                "use_beta_sigmas",
                "use_flow_sigmas",
                "flow_shift",
                "lambda_min_clipped",
                "variance_type",
                "timestep_spacing",
                "steps_offset",
            ],
            SchedulerClass::Ipndm => &["num_train_timesteps", "trained_betas"],
            SchedulerClass::FlowMatchHeunDiscrete => &["num_train_timesteps", "shift"],
            SchedulerClass::CosineDpmSolverMultistep => &[
                "sigma_min",
                "sigma_max",
                "sigma_data",
                "sigma_schedule",
                "num_train_timesteps",
                "solver_order",
                "prediction_type",
                "rho",
                "solver_type",
                "lower_order_final",
                "euler_at_final",
                "final_sigmas_type",
            ],
        };
        let mut keys: Vec<&'static str> = if self.has_beta_table() { COMMON_DISCRETE.to_vec() } else { Vec::new() };
        keys.extend_from_slice(own);
        keys
    }

    /// Whether the class builds diffusers' beta table (`num_train_timesteps`, `beta_start`,
    /// `beta_end`, `beta_schedule`, `trained_betas`): all but the flow-matching classes, the
    /// EDM-style classes (their noise levels come from `sigma_min` / `sigma_max`) and
    /// IPNDMScheduler (its own cosine grid).
    pub fn has_beta_table(self) -> bool {
        !matches!(
            self,
            SchedulerClass::FlowMatchEulerDiscrete
                | SchedulerClass::FlowMatchHeunDiscrete
                | SchedulerClass::EdmEuler
                | SchedulerClass::EdmDpmSolverMultistep
                | SchedulerClass::CosineDpmSolverMultistep
                | SchedulerClass::Ipndm
        )
    }

    /// Whether the network is EDM-preconditioned (EDMEuler, EDMDPMSolverMultistep,
    /// CosineDPMSolverMultistep): it gets `c_in(sigma) x` and returns `F` with
    /// `D = c_skip x + c_out F`.
    pub fn is_edm(self) -> bool {
        matches!(
            self,
            SchedulerClass::EdmEuler | SchedulerClass::EdmDpmSolverMultistep | SchedulerClass::CosineDpmSolverMultistep
        )
    }

    /// True when the class takes `key` in its constructor.
    pub fn accepts(self, key: &str) -> bool {
        self.keys().contains(&key)
    }

    /// Whether the class works on `x / alpha` (k-diffusion's scaled sample; its pipeline scales
    /// the model input by `1 / sqrt(sigma^2 + 1)`): Euler, Heun, LMS, Euler-ancestral, KDPM2,
    /// KDPM2-ancestral, DPMSolverSDE. (The EDM-style classes scale by `c_in` instead.)
    pub fn works_on_scaled_sample(self) -> bool {
        matches!(
            self,
            SchedulerClass::EulerDiscrete
                | SchedulerClass::HeunDiscrete
                | SchedulerClass::LmsDiscrete
                | SchedulerClass::EulerAncestralDiscrete
                | SchedulerClass::KDpm2Discrete
                | SchedulerClass::KDpm2AncestralDiscrete
                | SchedulerClass::DpmSolverSde
        )
    }
}

/// Options of diffusers scheduler classes outside [`SchedulerClass`] (consistency models,
/// amused, VQ-diffusion, SDE-VE, ... schedulers of diffusers 0.42.1). A config may carry them when it was written for
/// another class; diffusers ignores them for the classes here, and so does this layer (they are
/// listed in [`super::SchedulerConfig::ignored_keys`]).
pub const OTHER_DIFFUSERS_KEYS: &[&str] = &[
    "alpha_cum_end",
    "alpha_cum_start",
    "args",
    "block_length",
    "clip_denoised",
    "correct_steps",
    "corrector_k",
    "corrector_selection",
    "corrector_selection_tau",
    "corrector_steps",
    "editing_threshold",
    "entropy_bound",
    "eps",
    "eta",
    "final_step_size_scale",
    "gamma",
    "gamma_cum_end",
    "gamma_cum_start",
    "mask_token_id",
    "masking_schedule",
    "minimal_topk",
    "n_grid",
    "noise_mode",
    "num_inference_steps",
    "num_policy_substeps",
    "num_vec_classes",
    "s",
    "s_noise",
    "sampling_eps",
    "scale_factors",
    "scaler",
    "schedule_mode",
    "scheduler_type",
    "snr",
    "snr_shift_scale",
    "stage_range",
    "stages",
    "t_lim_ode",
    "t_lim_ode_below",
    "t_max",
    "t_min",
    "tail_step_multiplier",
    "tail_steps",
    "threshold",
    "tsr_k",
    "tsr_sigma",
    "upscale_mode",
    "quantization_config",
];

/// Keys starting with `_` that diffusers writes into configs (diffusers drops every key starting
/// with `_` when it builds a scheduler; these are accepted without a note).
pub const PRIVATE_KEYS: &[&str] = &["_class_name", "_diffusers_version", "_use_default_values", "_name_or_path"];
