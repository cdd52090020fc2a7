//! A dense row-major `f32` matrix: just enough for feature rows and the linear model, so the library
//! needs no tensor crate on its hot path.

/// Row-major matrix of `rows x cols` values.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Matrix {
    rows: usize,
    cols: usize,
    data: Vec<f32>,
}

impl Matrix {
    /// An empty matrix of `cols` columns with room for `rows` rows.
    pub fn with_capacity(rows: usize, cols: usize) -> Self {
        Matrix { rows: 0, cols, data: Vec::with_capacity(rows * cols) }
    }

    /// A matrix from row-major `data`; `None` when the length is not `rows * cols`.
    pub fn from_vec(rows: usize, cols: usize, data: Vec<f32>) -> Option<Self> {
        (data.len() == rows * cols).then_some(Matrix { rows, cols, data })
    }

    /// Appends a row. Rows of the wrong width are a programming error and panic.
    pub fn push_row(&mut self, row: &[f32]) {
        assert_eq!(row.len(), self.cols, "row width");
        self.data.extend_from_slice(row);
        self.rows += 1;
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of columns.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Row `i`.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.cols..(i + 1) * self.cols]
    }

    /// The rows at `idx`, in that order.
    pub fn select(&self, idx: &[usize]) -> Matrix {
        let mut m = Matrix::with_capacity(idx.len(), self.cols);
        for &i in idx {
            m.push_row(self.row(i));
        }
        m
    }

    /// Iterator over rows.
    pub fn iter_rows(&self) -> impl Iterator<Item = &[f32]> {
        self.data.chunks_exact(self.cols.max(1)).take(self.rows)
    }
}
