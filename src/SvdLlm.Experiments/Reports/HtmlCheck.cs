using System.Buffers.Binary;
using System.Diagnostics;
using System.IO.Compression;

namespace SvdLlm.Experiments.Reports;

/// <summary>What a PNG holds, enough to tell a rendered page from a blank one.</summary>
/// <param name="BackgroundFraction">share of pixels equal to the top-left one</param>
/// <param name="DistinctColors">distinct RGB values, counted up to 4096</param>
/// <param name="TopLeft">the top-left pixel as 0xRRGGBB</param>
public sealed record PngSummary(int Width, int Height, int BitDepth, int ColorType, double BackgroundFraction, int DistinctColors, int TopLeft);

/// <summary>A decoded PNG: 8-bit samples, <see cref="Channels"/> per pixel, row by row.</summary>
/// <param name="Dpi">from the pHYs chunk, when it gives pixels per metre</param>
public sealed record PngImage(int Width, int Height, int BitDepth, int ColorType, int Channels, byte[] Pixels, int? Dpi)
{
    /// <summary>Pixel <paramref name="index"/> (row-major) as 0xRRGGBB, alpha ignored.</summary>
    public int Rgb(int index)
    {
        int i = index * Channels;
        return Channels <= 2 ? Pixels[i] * 0x10101 : (Pixels[i] << 16) | (Pixels[i + 1] << 8) | Pixels[i + 2];
    }
}

/// <summary>
/// A small PNG decoder (8-bit grey, grey+alpha, RGB, RGBA, not interlaced, what Chromium and Skia write): IHDR,
/// the IDAT stream inflated with zlib, the five scanline filters undone, and pHYs read, to look at real pixels.
/// </summary>
public static class PngInspector
{
    private static readonly byte[] Signature = [137, 80, 78, 71, 13, 10, 26, 10];

    public static PngSummary Inspect(string path)
    {
        var image = Decode(File.ReadAllBytes(path), path);
        int background = image.Rgb(0);
        long same = 0;
        var colors = new HashSet<int>();
        for (int i = 0; i < image.Width * image.Height; i++)
        {
            int c = image.Rgb(i);
            if (c == background) same++;
            if (colors.Count < 4096) colors.Add(c);
        }
        return new PngSummary(image.Width, image.Height, image.BitDepth, image.ColorType, (double)same / ((long)image.Width * image.Height), colors.Count, background);
    }

    /// <summary>The pixels of a PNG file's bytes; <paramref name="name"/> only names it in errors.</summary>
    public static PngImage Decode(byte[] file, string name = "png")
    {
        if (file.Length < 8 || !file.AsSpan(0, 8).SequenceEqual(Signature))
            throw new InvalidDataException($"'{name}' is not a PNG (bad signature)");
        int pos = 8, width = 0, height = 0, bitDepth = 0, colorType = -1, interlace = 0;
        int? dpi = null;
        using var idat = new MemoryStream();
        while (pos + 8 <= file.Length)
        {
            int length = BinaryPrimitives.ReadInt32BigEndian(file.AsSpan(pos));
            string type = System.Text.Encoding.ASCII.GetString(file, pos + 4, 4);
            if (length < 0 || pos + 12 + (long)length > file.Length) throw new InvalidDataException($"'{name}': chunk {type} at byte {pos} runs past the end of the file");
            var body = file.AsSpan(pos + 8, length);
            if (type == "IHDR")
            {
                width = BinaryPrimitives.ReadInt32BigEndian(body);
                height = BinaryPrimitives.ReadInt32BigEndian(body[4..]);
                bitDepth = body[8];
                colorType = body[9];
                interlace = body[12];
            }
            else if (type == "pHYs" && length == 9 && body[8] == 1)
                dpi = (int)Math.Round(BinaryPrimitives.ReadUInt32BigEndian(body) * 0.0254); // unit 1: pixels per metre
            else if (type == "IDAT") idat.Write(body);
            else if (type == "IEND") break;
            pos += 12 + length;
        }
        if (colorType < 0) throw new InvalidDataException($"'{name}': no IHDR chunk");
        int channels = colorType switch { 0 => 1, 2 => 3, 4 => 2, 6 => 4, _ => 0 };
        if (channels == 0 || bitDepth != 8 || interlace != 0)
            throw new InvalidDataException($"'{name}': colour type {colorType}, bit depth {bitDepth}, interlace {interlace} not supported (8-bit grey/RGB/RGBA only)");

        int stride = width * channels;
        byte[] raw = new byte[(long)height * (stride + 1) > int.MaxValue ? throw new InvalidDataException($"'{name}': image too large") : height * (stride + 1)];
        idat.Position = 0;
        using (var z = new ZLibStream(idat, CompressionMode.Decompress))
        {
            int read = 0, n;
            while (read < raw.Length && (n = z.Read(raw, read, raw.Length - read)) > 0) read += n;
            if (read != raw.Length) throw new InvalidDataException($"'{name}': image data holds {read} bytes, expected {raw.Length}");
        }
        return new PngImage(width, height, bitDepth, colorType, channels, Unfilter(raw, width, height, channels, name), dpi);
    }

    /// <summary>PNG scanline filters (spec section 9): each byte was stored minus a predictor from the left (a), above (b) and upper-left (c) bytes.</summary>
    public static byte[] Unfilter(byte[] raw, int width, int height, int bytesPerPixel, string path = "png")
    {
        int stride = width * bytesPerPixel;
        var output = new byte[height * stride];
        for (int y = 0; y < height; y++)
        {
            int filter = raw[y * (stride + 1)];
            int src = y * (stride + 1) + 1, dst = y * stride;
            for (int x = 0; x < stride; x++)
            {
                int a = x >= bytesPerPixel ? output[dst + x - bytesPerPixel] : 0;
                int b = y > 0 ? output[dst - stride + x] : 0;
                int c = x >= bytesPerPixel && y > 0 ? output[dst - stride + x - bytesPerPixel] : 0;
                int predictor = filter switch
                {
                    0 => 0,
                    1 => a,
                    2 => b,
                    3 => (a + b) >> 1,
                    4 => Paeth(a, b, c),
                    _ => throw new InvalidDataException($"'{path}': scanline {y} has unknown filter type {filter}"),
                };
                output[dst + x] = (byte)(raw[src + x] + predictor);
            }
        }
        return output;
    }

    private static int Paeth(int a, int b, int c)
    {
        int p = a + b - c, pa = Math.Abs(p - a), pb = Math.Abs(p - b), pc = Math.Abs(p - c);
        return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
    }
}

/// <summary>Renders report.html in headless Chromium and checks the screenshot: the page loads offline and draws something.</summary>
public static class HtmlCheck
{
    public const int Width = 1280, Height = 2000;

    private static readonly string[] Names = ["chromium", "chromium-browser", "google-chrome", "google-chrome-stable"];

    /// <summary>The first Chromium-like browser on PATH, or null.</summary>
    public static string? FindChromium()
    {
        foreach (string dir in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries))
            foreach (string name in Names)
            {
                string candidate = Path.Combine(dir, name);
                if (File.Exists(candidate)) return candidate;
            }
        return null;
    }

    /// <summary>Screenshots <paramref name="htmlPath"/> to <paramref name="pngPath"/> and checks it; throws <see cref="ReportException"/> saying what is wrong.</summary>
    public static PngSummary Check(string htmlPath, string pngPath, TimeSpan? timeout = null)
    {
        string chromium = FindChromium() ?? throw new ReportException("--check-html needs Chromium: not found on PATH (install it with: sudo apt-get install -y chromium, or ./build.sh --target=Setup as root)");
        string html = Path.GetFullPath(htmlPath);
        if (!File.Exists(html)) throw new ReportException($"'{html}' not found");
        string png = Path.GetFullPath(pngPath);
        if (File.Exists(png)) File.Delete(png);
        // A fresh profile each time: no first-run state, no shared locks with a browser the user has open.
        string profile = Path.Combine(Path.GetTempPath(), "svdllm-chromium-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(profile);
        try
        {
            var psi = new ProcessStartInfo(chromium)
            {
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                UseShellExecute = false,
            };
            foreach (string arg in new[]
                     {
                         "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                         "--disable-component-update", "--disable-sync", "--hide-scrollbars", $"--user-data-dir={profile}", $"--screenshot={png}",
                         $"--window-size={Width},{Height}", new Uri(html).AbsoluteUri,
                     })
                psi.ArgumentList.Add(arg);
            using var process = Process.Start(psi) ?? throw new ReportException($"could not start '{chromium}'");
            var stderr = process.StandardError.ReadToEndAsync();
            var stdout = process.StandardOutput.ReadToEndAsync();
            if (!process.WaitForExit(timeout ?? TimeSpan.FromSeconds(90)))
            {
                process.Kill(entireProcessTree: true);
                throw new ReportException($"Chromium did not finish rendering '{html}' within {(timeout ?? TimeSpan.FromSeconds(90)).TotalSeconds:F0} s");
            }
            process.WaitForExit();
            if (!File.Exists(png))
            {
                string err = stderr.Result.Trim();
                throw new ReportException($"Chromium exited with code {process.ExitCode} and wrote no screenshot of '{html}'" + (err.Length > 0 ? ": " + Last(err, 600) : ""));
            }
            _ = stdout.Result;
        }
        finally
        {
            try { Directory.Delete(profile, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        }
        var summary = PngInspector.Inspect(png);
        if (summary.Width != Width || summary.Height != Height)
            throw new ReportException($"screenshot '{png}' is {summary.Width}×{summary.Height}, expected {Width}×{Height}");
        // A page that failed to render is one flat colour; a report has text, rules and coloured plots.
        if (summary.BackgroundFraction > 0.995 || summary.DistinctColors < 16)
            throw new ReportException($"screenshot '{png}' looks blank: {summary.BackgroundFraction:P2} of pixels are the background colour, {summary.DistinctColors} distinct colours");
        // The page margin shows the report's own body colour: proof that this page, with its inline CSS, was rendered (not an error page).
        if (summary.TopLeft != HtmlReport.BodyBackground)
            throw new ReportException($"screenshot '{png}' does not look like the report: top-left pixel is #{summary.TopLeft:x6}, expected the page background #{HtmlReport.BodyBackground:x6}");
        return summary;
    }

    private static string Last(string s, int n) => s.Length <= n ? s : "…" + s[^n..];
}
