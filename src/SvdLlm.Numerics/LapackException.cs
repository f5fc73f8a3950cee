namespace SvdLlm.Numerics;

/// <summary>
/// A LAPACK routine returned a non-zero <c>info</c>. Negative: argument −info had an illegal value
/// (a bug in the caller); positive: a numerical failure whose meaning depends on the routine
/// (not positive definite, no convergence).
/// </summary>
public sealed class LapackException : Exception
{
    public string Routine { get; }
    public int Info { get; }

    public LapackException(string routine, int info, string message) : base(message)
    {
        Routine = routine;
        Info = info;
    }
}
