//! Text on example pictures: a system TrueType font registered for plotters, and captions drawn
//! onto a grayscale image grid. Shared by `nfe_curve` and the UNet examples.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use plotters::prelude::*;

/// Register a TrueType font for plotters' "sans-serif"; false if none could be loaded.
pub fn register_font(explicit: Option<&Path>) -> bool {
    let candidates: Vec<PathBuf> = match explicit {
        Some(p) => vec![p.to_path_buf()],
        None => [
            "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
            "/usr/share/fonts/TTF/DejaVuSans.ttf",
            "/usr/share/fonts/dejavu/DejaVuSans.ttf",
            "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
            "/Library/Fonts/Arial.ttf",
            "/System/Library/Fonts/Supplemental/Arial.ttf",
            "C:\\Windows\\Fonts\\arial.ttf",
        ]
        .iter()
        .map(PathBuf::from)
        .collect(),
    };
    for p in candidates {
        if let Ok(bytes) = std::fs::read(&p) {
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            if plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok() {
                return true;
            }
        }
    }
    eprintln!("no TrueType font found (install fonts-dejavu-core; nfe_curve also takes --font): pictures without text");
    false
}

/// A caption: top-left corner in pixels, text, font size in pixels.
pub struct Caption {
    pub x: i32,
    pub y: i32,
    pub text: String,
    pub size: u32,
}

/// `gray` on a white canvas with `left` / `top` margins, captions drawn in black. Without a font
/// (see [`register_font`]) the captions are left out and the picture is otherwise the same.
pub fn annotate(gray: &image::GrayImage, left: u32, top: u32, captions: &[Caption], font: bool) -> image::RgbImage {
    let (w, h) = (gray.width() + left, gray.height() + top);
    let mut canvas = image::RgbImage::from_pixel(w, h, image::Rgb([255, 255, 255]));
    for (x, y, p) in gray.enumerate_pixels() {
        canvas.put_pixel(x + left, y + top, image::Rgb([p[0]; 3]));
    }
    if font {
        let mut buf = canvas.into_raw();
        {
            let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
            for c in captions {
                // a caption that does not fit is clipped by plotters, never an error worth stopping for
                let _ = root.draw_text(&c.text, &("sans-serif", c.size).into_font().color(&BLACK), (c.x, c.y));
            }
            let _ = root.present();
        }
        canvas = image::RgbImage::from_raw(w, h, buf).expect("plotters draws in place: the buffer keeps its size");
    }
    canvas
}
