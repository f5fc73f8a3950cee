namespace SvdLlm.Build;

/// <summary>
/// A build target. Subclasses are found by reflection, so adding a target means adding one class under
/// Tasks/ with <see cref="TaskNameAttribute"/> (and usually <see cref="IsDependentOnAttribute"/>).
/// </summary>
public abstract class FrostingTask
{
    public abstract void Run(BuildContext context);
}
