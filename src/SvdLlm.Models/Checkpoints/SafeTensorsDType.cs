namespace SvdLlm.Models.Checkpoints;

/// <summary>
/// Element types a safetensors header can declare. Member names are spelled exactly as in the header
/// ("BF16", "F8_E4M3", ...). Only F64/F32/F16/BF16 can be loaded as weights; the others are known
/// so that a file containing them (e.g. an I64 position-id buffer) still validates.
/// </summary>
public enum SafeTensorsDType
{
    F64,
    F32,
    F16,
    BF16,
    I64,
    I32,
    I16,
    I8,
    U64,
    U32,
    U16,
    U8,
    BOOL,
    F8_E4M3,
    F8_E5M2,
}

/// <summary>Sizes, header spellings and parsing for <see cref="SafeTensorsDType"/>.</summary>
public static class SafeTensorsDTypes
{
    /// <summary>Bytes per element, used to check that data_offsets match the declared shape.</summary>
    public static int ElementSize(this SafeTensorsDType dtype) => dtype switch
    {
        SafeTensorsDType.F64 or SafeTensorsDType.I64 or SafeTensorsDType.U64 => 8,
        SafeTensorsDType.F32 or SafeTensorsDType.I32 or SafeTensorsDType.U32 => 4,
        SafeTensorsDType.F16 or SafeTensorsDType.BF16 or SafeTensorsDType.I16 or SafeTensorsDType.U16 => 2,
        SafeTensorsDType.I8 or SafeTensorsDType.U8 or SafeTensorsDType.BOOL
            or SafeTensorsDType.F8_E4M3 or SafeTensorsDType.F8_E5M2 => 1,
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "Not a safetensors dtype."),
    };

    /// <summary>True for the floating-point dtypes that can be converted to float32 weights.</summary>
    public static bool IsLoadableAsFloat32(this SafeTensorsDType dtype) =>
        dtype is SafeTensorsDType.F32 or SafeTensorsDType.F16 or SafeTensorsDType.BF16 or SafeTensorsDType.F64;

    /// <summary>The spelling used in safetensors headers.</summary>
    public static string ToHeaderString(this SafeTensorsDType dtype) =>
        Enum.IsDefined(dtype) ? dtype.ToString() : throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "Not a safetensors dtype.");

    /// <summary>
    /// Parses a header dtype string. Exact, case-sensitive match only: Enum.TryParse would also accept
    /// "f32" or "3", which no safetensors writer produces.
    /// </summary>
    public static bool TryParse(string text, out SafeTensorsDType dtype)
    {
        foreach (SafeTensorsDType candidate in Enum.GetValues<SafeTensorsDType>())
        {
            if (string.Equals(candidate.ToString(), text, StringComparison.Ordinal))
            {
                dtype = candidate;
                return true;
            }
        }
        dtype = default;
        return false;
    }

    /// <summary>Parses a header dtype string; an unknown one is an <see cref="ArgumentException"/> naming it.</summary>
    public static SafeTensorsDType Parse(string text) =>
        TryParse(text, out SafeTensorsDType dtype)
            ? dtype
            : throw new ArgumentException($"Unknown safetensors dtype '{text}'; known dtypes are {KnownList}.", nameof(text));

    /// <summary>Comma-separated list of every known dtype, for error messages.</summary>
    public static string KnownList => string.Join(", ", Enum.GetNames<SafeTensorsDType>());
}
