//! llama.cpp's file types: the `general.file_type` key (`LLAMA_FTYPE_*`),
//! which names the type most of a file's weight matrices have. This is the
//! one table of them in phi.rs.

/// A `general.file_type` value. The variant names are llama.cpp's without
/// the `LLAMA_FTYPE_MOSTLY_` / `ALL_` prefix.
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileType {
    F32,
    F16,
    Q4_0,
    Q4_1,
    Q8_0,
    Q5_0,
    Q5_1,
    Q2_K,
    Q3_K_S,
    Q3_K_M,
    Q3_K_L,
    Q4_K_S,
    Q4_K_M,
    Q5_K_S,
    Q5_K_M,
    Q6_K,
    IQ2_XXS,
    IQ2_XS,
    Q2_K_S,
    IQ3_XS,
    IQ3_XXS,
    IQ1_S,
    IQ4_NL,
    IQ3_S,
    IQ3_M,
    IQ2_S,
    IQ2_M,
    IQ4_XS,
    IQ1_M,
    BF16,
    TQ1_0,
    TQ2_0,
    MXFP4_MOE,
}

/// (type, `general.file_type` number, name). Numbers missing here (4-6,
/// 33-35) are retired in llama.cpp.
const TABLE: &[(FileType, u32, &str)] = &[
    (FileType::F32, 0, "F32"),
    (FileType::F16, 1, "F16"),
    (FileType::Q4_0, 2, "Q4_0"),
    (FileType::Q4_1, 3, "Q4_1"),
    (FileType::Q8_0, 7, "Q8_0"),
    (FileType::Q5_0, 8, "Q5_0"),
    (FileType::Q5_1, 9, "Q5_1"),
    (FileType::Q2_K, 10, "Q2_K"),
    (FileType::Q3_K_S, 11, "Q3_K_S"),
    (FileType::Q3_K_M, 12, "Q3_K_M"),
    (FileType::Q3_K_L, 13, "Q3_K_L"),
    (FileType::Q4_K_S, 14, "Q4_K_S"),
    (FileType::Q4_K_M, 15, "Q4_K_M"),
    (FileType::Q5_K_S, 16, "Q5_K_S"),
    (FileType::Q5_K_M, 17, "Q5_K_M"),
    (FileType::Q6_K, 18, "Q6_K"),
    (FileType::IQ2_XXS, 19, "IQ2_XXS"),
    (FileType::IQ2_XS, 20, "IQ2_XS"),
    (FileType::Q2_K_S, 21, "Q2_K_S"),
    (FileType::IQ3_XS, 22, "IQ3_XS"),
    (FileType::IQ3_XXS, 23, "IQ3_XXS"),
    (FileType::IQ1_S, 24, "IQ1_S"),
    (FileType::IQ4_NL, 25, "IQ4_NL"),
    (FileType::IQ3_S, 26, "IQ3_S"),
    (FileType::IQ3_M, 27, "IQ3_M"),
    (FileType::IQ2_S, 28, "IQ2_S"),
    (FileType::IQ2_M, 29, "IQ2_M"),
    (FileType::IQ4_XS, 30, "IQ4_XS"),
    (FileType::IQ1_M, 31, "IQ1_M"),
    (FileType::BF16, 32, "BF16"),
    (FileType::TQ1_0, 36, "TQ1_0"),
    (FileType::TQ2_0, 37, "TQ2_0"),
    (FileType::MXFP4_MOE, 38, "MXFP4_MOE"),
];

impl FileType {
    /// The type with `general.file_type` number `id`, if llama.cpp has one.
    pub fn from_id(id: u32) -> Option<FileType> {
        TABLE.iter().find(|(_, i, _)| *i == id).map(|(f, _, _)| *f)
    }

    fn row(self) -> &'static (FileType, u32, &'static str) {
        // Every variant has a row (checked by a test).
        TABLE
            .iter()
            .find(|(f, _, _)| *f == self)
            .unwrap_or(&TABLE[0])
    }

    /// The `general.file_type` number.
    pub fn id(self) -> u32 {
        self.row().1
    }

    /// The short name, e.g. `Q4_K_M`.
    pub fn name(self) -> &'static str {
        self.row().2
    }

    /// llama.cpp's enum name without `LLAMA_FTYPE_`: `ALL_F32`, `MOSTLY_Q4_K_M`.
    pub fn llama_name(self) -> String {
        match self {
            FileType::F32 => "ALL_F32".into(),
            other => format!("MOSTLY_{}", other.name()),
        }
    }

    /// Every file type, in `general.file_type` order.
    pub fn all() -> impl Iterator<Item = FileType> {
        TABLE.iter().map(|(f, _, _)| *f)
    }
}

impl std::fmt::Display for FileType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_names_round_trip() {
        let mut ids = std::collections::HashSet::new();
        for ft in FileType::all() {
            assert_eq!(FileType::from_id(ft.id()), Some(ft));
            assert!(ids.insert(ft.id()), "{ft} twice");
            assert_eq!(ft.row().0, ft);
        }
        assert_eq!(ids.len(), 33);
        assert_eq!(FileType::from_id(15).map(FileType::name), Some("Q4_K_M"));
        assert_eq!(FileType::Q8_0.llama_name(), "MOSTLY_Q8_0");
        assert_eq!(FileType::F32.llama_name(), "ALL_F32");
        assert_eq!(FileType::BF16.id(), 32);
        for retired in [4, 5, 6, 33, 34, 35, 39] {
            assert_eq!(FileType::from_id(retired), None);
        }
    }
}
